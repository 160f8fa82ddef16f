"""The experiment manager: factorial designs of pipeline configs over seeds and folds.

``edgeq experiment DESIGN.json`` expands a :class:`~edgeq.lab.experiment.design.Design`
into runs, validates them all, runs them (in parallel processes with ``--workers``,
resumable with ``--resume``) and writes the register ``runs.csv`` and the reports;
``edgeq experiment-report DIR`` recomputes the statistics. Imports nothing heavy here:
the CLI wiring must stay torch-free.
"""
