"""``report.json``, ``report.md`` and ``report.html`` of an experiment directory.

Numbers in the tables: ``mean ± std [95 % CI low, high]`` over the finished runs of a
cell (seeds x folds), two decimals. The HTML page embeds one PNG per factor (the
headline metric against the factor's levels, one line per combination of the other
factors, 95 % CI error bars) and links every run's directory.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from edgeq.engine.tensor_io import write_json
from edgeq.errors import ConfigError
from edgeq.lab.experiment.design import Design
from edgeq.lab.experiment.register import REGISTER, read_register
from edgeq.lab.experiment.stats import analyse

# compared and tabulated, per primary metric; cv_fq: the held-out fold (with cv only)
TABLE_STAGES = ("fp", "fq", "tq", "deployed", "cv_fq")
FIXED_COLUMNS = ("run", "cell", "seed", "fold", "status", "seconds", "error")


def load_experiment(out: Path) -> tuple[Design, list[dict]]:
    path = out / "design.json"
    if not path.is_file():
        raise ConfigError(f"{out}: not an experiment directory (no design.json)")
    design = Design.load(path)
    return design, read_register(out / REGISTER, factors=tuple(design.factors))


def primary_metric(design: Design) -> str:
    """The task's primary metric (``accuracy``, ``nme`` ...), from the first run."""
    from edgeq.lab.tasks import task_class

    cells = design.cells()
    if not cells:
        raise ConfigError("the design has no cells: every combination is excluded")
    task = design.cell_config(cells[0]).get("task", {})
    name = task.get("name", "digits") if isinstance(task, dict) else "digits"
    return task_class(name).metric.name


def write_report(out: str | Path) -> str:
    """Compute the statistics of ``out``, write the three report files; the markdown."""
    out = Path(out)
    design, rows = load_experiment(out)
    primary = primary_metric(design)
    factors = list(design.factors)
    metrics = [c for c in (rows[0] if rows else {}) if c not in FIXED_COLUMNS
               and c not in factors and any(_is_number(r.get(c)) for r in rows)]
    # engine_ and dory_ equal tq_ when bit-exact (the register keeps them all)
    compare = [f"{stage}_{primary}" for stage in TABLE_STAGES
               if f"{stage}_{primary}" in metrics]
    stats = analyse(rows, factors, metrics, compare,
                    {f: list(lv) for f, lv in design.factors.items()})
    stats.update(name=design.name, primary=primary, table_metrics=compare,
                 runs={"total": len(rows),
                       "done": sum(r["status"] == "done" for r in rows),
                       "failed": sum(r["status"] == "failed" for r in rows)})
    markdown = format_markdown(stats)
    write_json(out / "report.json", stats)
    _write_text(out / "report.md", markdown)
    _write_text(out / "report.html", format_html(stats, rows, design))
    return markdown


def cell_text(s: dict) -> str:
    """``mean ± std [lo, hi]``; a single run gives its value only."""
    if s["mean"] is None:
        return "–"
    if s["std"] is None:
        return f"{s['mean']:.2f}"
    return f"{s['mean']:.2f} ± {s['std']:.2f} [{s['ci_low']:.2f}, {s['ci_high']:.2f}]"


def _p(value) -> str:
    return "–" if value is None else f"{value:.3g}"


def format_markdown(stats: dict) -> str:
    factors, shown = stats["factors"], stats["table_metrics"]
    runs = stats["runs"]
    lines = [f"# Experiment {stats['name']}", "",
             f"{runs['done']} of {runs['total']} runs done, {runs['failed']} failed. "
             "Cells: mean ± std [95 % CI, t distribution] over seeds x folds.", "",
             "| " + " | ".join([*factors, "runs", *shown]) + " |",
             "|" + "---|" * (len(factors) + 1 + len(shown))]
    for cell in stats["cells"]:
        values = [cell_text(cell["metrics"][m]) for m in shown]
        lines.append("| " + " | ".join([*(cell["levels"][f] for f in factors),
                                         str(cell["runs"]), *values]) + " |")
    fold_rows = [(c, fm) for c in stats["cells"] for fm in c["fold_means"]]
    if fold_rows:
        lines += ["", "## Fold means", "",
                  "| " + " | ".join([*factors, "seed", "folds", *shown]) + " |",
                  "|" + "---|" * (len(factors) + 2 + len(shown))]
        for cell, fm in fold_rows:
            values = [f"{fm[m]:.2f}" if m in fm else "–" for m in shown]
            lines.append("| " + " | ".join([*(cell["levels"][f] for f in factors),
                                             str(fm["seed"]), str(fm["folds"]), *values])
                         + " |")
    if stats["comparisons"]:
        lines += ["", "## Paired comparisons (cells differing in one factor)", "",
                  "| factor | a → b | other factors | metric | n | mean diff (b − a) | "
                  "p (paired t) | p (Wilcoxon) |", "|---|---|---|---|---|---|---|---|"]
        for c in stats["comparisons"]:
            fixed = ", ".join(f"{k}={v}" for k, v in c["fixed"].items()) or "–"
            diff = "–" if c["mean_diff"] is None else f"{c['mean_diff']:+.2f}"
            lines.append(f"| {c['factor']} | {c['a']} → {c['b']} | {fixed} | {c['metric']} | "
                         f"{c['n']} | {diff} | {_p(c['p_t'])} | {_p(c['p_wilcoxon'])} |")
    return "\n".join(lines) + "\n"


def headline(stats: dict) -> str | None:
    """The metric of the plots: the integer network's (``tq_``) primary metric."""
    shown = stats["table_metrics"]
    preferred = f"tq_{stats['primary']}"
    return preferred if preferred in shown else (shown[0] if shown else None)


def factor_plot(stats: dict, factor: str, metric: str) -> bytes:
    """PNG: ``metric`` against the levels of ``factor``, one line per other-factor cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    others = [f for f in stats["factors"] if f != factor]
    levels = list(dict.fromkeys(c["levels"][factor] for c in stats["cells"]))
    lines: dict[tuple, dict] = {}
    for cell in stats["cells"]:
        key = tuple(cell["levels"][f] for f in others)
        lines.setdefault(key, {})[cell["levels"][factor]] = cell["metrics"][metric]
    fig, ax = plt.subplots(figsize=(4.8, 3.2), dpi=100)
    width = 0.08 * (len(lines) - 1)  # dodge the lines so that error bars do not overlap
    for n, (key, points) in enumerate(lines.items()):
        shift = -width / 2 + 0.08 * n
        xs = [i for i, lv in enumerate(levels) if lv in points and points[lv]["mean"] is not None]
        ms = [points[levels[i]]["mean"] for i in xs]
        err = [0.0 if points[levels[i]]["ci_high"] is None
               else points[levels[i]]["ci_high"] - points[levels[i]]["mean"] for i in xs]
        label = ", ".join(f"{f}={v}" for f, v in zip(others, key, strict=True)) or "all"
        ax.errorbar([x + shift for x in xs], ms, yerr=err, marker="o", capsize=3, label=label)
    ax.set_xticks(range(len(levels)), levels)
    ax.set_xlabel(factor)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by {factor} (95 % CI)")
    if len(lines) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def format_html(stats: dict, rows: list[dict], design: Design) -> str:
    esc = html.escape
    factors, shown = stats["factors"], stats["table_metrics"]
    runs = stats["runs"]
    head = "".join(f"<th>{esc(h)}</th>" for h in [*factors, "runs", *shown])
    body = []
    for cell in stats["cells"]:
        tds = [f'<td class="level">{esc(cell["levels"][f])}</td>' for f in factors]
        tds.append(f'<td class="runs">{cell["runs"]}</td>')
        tds += [f'<td data-metric="{esc(m)}">{esc(cell_text(cell["metrics"][m]))}</td>'
                for m in shown]
        body.append("<tr>" + "".join(tds) + "</tr>")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Experiment {esc(stats['name'])}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right;white-space:nowrap}"
        ".failed{color:#b00}</style></head><body>",
        f"<h1>Experiment {esc(stats['name'])}</h1>",
        f"<p>{runs['done']} of {runs['total']} runs done, {runs['failed']} failed. Cells: "
        "mean ± std [95 % CI, t distribution] over seeds × folds.</p>",
        '<h2>Design</h2><table id="cells"><thead><tr>' + head + "</tr></thead><tbody>"
        + "".join(body) + "</tbody></table>",
    ]
    metric = headline(stats)
    if metric is not None and factors and runs["done"]:
        parts.append("<h2>Per factor</h2>")
        for factor in factors:
            png = base64.b64encode(factor_plot(stats, factor, metric)).decode()
            parts.append(f'<img class="factor-plot" alt="{esc(metric)} by {esc(factor)}" '
                         f'src="data:image/png;base64,{png}">')
    if stats["comparisons"]:
        parts.append('<h2>Paired comparisons</h2><table id="comparisons"><thead><tr>'
                     "<th>factor</th><th>a → b</th><th>other factors</th><th>metric</th>"
                     "<th>n</th><th>mean diff</th><th>p (paired t)</th><th>p (Wilcoxon)</th>"
                     "</tr></thead><tbody>")
        for c in stats["comparisons"]:
            fixed = ", ".join(f"{k}={v}" for k, v in c["fixed"].items()) or "–"
            diff = "–" if c["mean_diff"] is None else f"{c['mean_diff']:+.2f}"
            parts.append(f"<tr><td>{esc(c['factor'])}</td><td>{esc(c['a'])} → "
                         f"{esc(c['b'])}</td><td>{esc(fixed)}</td><td>{esc(c['metric'])}</td>"
                         f"<td>{c['n']}</td><td>{diff}</td><td>{_p(c['p_t'])}</td>"
                         f"<td>{_p(c['p_wilcoxon'])}</td></tr>")
        parts.append("</tbody></table>")
    parts.append('<h2>Runs</h2><table id="runs"><thead><tr><th>run</th><th>status</th>'
                 + "".join(f"<th>{esc(m)}</th>" for m in shown)
                 + "<th>error</th></tr></thead><tbody>")
    for r in rows:
        cls = ' class="failed"' if r["status"] == "failed" else ""
        vals = "".join(f"<td>{r[m]:.2f}</td>" if isinstance(r.get(m), float) else "<td>–</td>"
                       for m in shown)
        parts.append(f'<tr{cls}><td><a href="runs/{esc(r["run"])}/">{esc(r["run"])}</a></td>'
                     f"<td>{esc(r['status'])}</td>{vals}<td>{esc(r['error'])}</td></tr>")
    parts.append("</tbody></table>")
    parts.append("<h2>Design file</h2><pre>" + esc(json.dumps(design.to_json(), indent=2))
                 + "</pre></body></html>")
    return "\n".join(parts) + "\n"


def _is_number(value) -> bool:
    return isinstance(value, float)


def _write_text(path: Path, text: str) -> None:
    from edgeq.engine.tensor_io import write_atomic

    data = text.encode("utf-8")
    write_atomic(path, lambda f: f.write(data))
