"""Statistics of an experiment: per cell, and paired comparisons between cells.

The replicates of a cell are its finished runs (seeds x folds). Per metric: mean, sample
standard deviation (n - 1), and the 95 % confidence interval of the mean from the t
distribution, ``mean ± t(0.975, n-1) * std / sqrt(n)``. With cross-validation the fold
mean per seed is given too.

Two cells that differ in exactly one factor are compared on the runs they share (same
seed and fold): the paired t-test and the Wilcoxon signed-rank test (scipy), both
two-sided, on the primary metric of every stage (``fp_accuracy``, ``tq_accuracy`` ...).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

CONFIDENCE = 0.95


def summary(values: list[float]) -> dict:
    """n, mean, std (n-1), and the 95 % t interval; std/CI are None for n < 2."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    out = {"n": n, "mean": float(x.mean()) if n else None, "std": None,
           "ci_low": None, "ci_high": None}
    if n >= 2:
        std = float(x.std(ddof=1))
        half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * std / math.sqrt(n)
        out.update(std=std, ci_low=out["mean"] - half, ci_high=out["mean"] + half)
    return out


def paired(a: list[float], b: list[float]) -> dict:
    """Paired comparison of ``b`` against ``a`` (same order = same seed and fold)."""
    from scipy import stats

    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    out = {"n": len(d), "mean_diff": float(d.mean()) if len(d) else None,
           "t": None, "p_t": None, "p_wilcoxon": None}
    if len(d) < 2:
        return out
    if np.all(d == d[0]):  # no spread: the t statistic is undefined
        out["p_t"] = 1.0 if d[0] == 0 else None
    else:
        t = stats.ttest_rel(b, a)
        out.update(t=float(t.statistic), p_t=float(t.pvalue))
    if np.any(d != 0):
        out["p_wilcoxon"] = float(stats.wilcoxon(d).pvalue)
    else:
        out["p_wilcoxon"] = 1.0
    return out


def analyse(rows: list[dict], factors: list[str], metrics: list[str],
            compare: list[str], levels: dict[str, list[str]] | None = None) -> dict:
    """Cells, fold means and comparisons from the register rows (done runs only). Cells
    and comparison directions follow the order of ``levels`` (factor -> its levels, as in
    the design); without it, the order rows first show them in."""
    done = [r for r in rows if r["status"] == "done"]
    by_cell: dict[tuple, list[dict]] = defaultdict(list)
    order: list[tuple] = []
    for row in rows:
        key = tuple(row[f] for f in factors)
        if key not in order:
            order.append(key)
    if levels is not None:
        order.sort(key=lambda k: [levels[f].index(v) for f, v in zip(factors, k, strict=True)])
    for row in done:
        by_cell[tuple(row[f] for f in factors)].append(row)
    cells = []
    for key in order:
        runs = by_cell.get(key, [])
        cell = {"levels": dict(zip(factors, key, strict=True)), "runs": len(runs),
                "metrics": {m: summary([r[m] for r in runs if _num(r.get(m))])
                            for m in metrics}}
        cell["fold_means"] = _fold_means(runs, metrics)
        cells.append(cell)
    return {"factors": factors, "metrics": metrics, "cells": cells,
            "comparisons": _comparisons(order, by_cell, factors, compare)}


def _fold_means(runs: list[dict], metrics: list[str]) -> list[dict]:
    """Per seed, the mean over its folds of every metric (empty without folds)."""
    seeds: dict[int, list[dict]] = defaultdict(list)
    for r in runs:
        if r.get("fold") is not None:
            seeds[r["seed"]].append(r)
    return [{"seed": s, "folds": len(rs),
             **{m: float(np.mean([r[m] for r in rs])) for m in metrics
                if all(_num(r.get(m)) for r in rs)}}
            for s, rs in sorted(seeds.items())]


def _comparisons(order, by_cell, factors, compare) -> list[dict]:
    out = []
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            diff = [k for k, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
            if len(diff) != 1:
                continue
            ra = {(r["seed"], r.get("fold")): r for r in by_cell.get(a, [])}
            rb = {(r["seed"], r.get("fold")): r for r in by_cell.get(b, [])}
            shared = sorted(set(ra) & set(rb), key=lambda k: (k[0], -1 if k[1] is None
                                                              else k[1]))
            f = diff[0]
            for m in compare:
                keys = [k for k in shared if _num(ra[k].get(m)) and _num(rb[k].get(m))]
                out.append({"factor": factors[f], "a": a[f], "b": b[f],
                            "fixed": {factors[k]: a[k] for k in range(len(a)) if k != f},
                            "metric": m, **paired([ra[k][m] for k in keys],
                                                  [rb[k][m] for k in keys])})
    return out


def _num(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)
