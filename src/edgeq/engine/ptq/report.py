"""Text forms of PTQ results."""

from __future__ import annotations

from pathlib import Path


def _table(header: tuple, rows: list[tuple]) -> str:
    cells = [tuple(str(c) for c in r) for r in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in cells]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def describe_var(vq: dict | None) -> str:
    if not vq:
        return "-"
    text = f"{vq['method']} {vq['bits']}b"
    if vq.get("codebook") is not None:
        text += f" codebook[{len(vq['codebook'])}] fl={vq['fl']}"
    elif vq.get("channel_fl") is not None:
        fls = vq["channel_fl"]
        text += f" fl={min(fls)}..{max(fls)}"
    elif vq.get("fl") is not None:
        text += f" fl={vq['fl']}"
    return text


def format_summary(summary: dict) -> str:
    """The ``edgeq ptq`` report: one line per layer, then the eval metric."""
    rows = []
    for name, rec in summary["config"]["layers"].items():
        l2 = summary["l2"][name]
        rows.append((name, describe_var(rec.get("weights")), describe_var(rec.get("activations")),
                     f"{l2['weights']:.4g}" if "weights" in l2 else "-",
                     f"{l2['activations']:.4g}"))
    out = [f"{summary['model']}: {summary['method']} {summary['bits']} bit, "
           f"{summary['layers']} layers",
           "", _table(("layer", "weights", "activations", "L2 weights", "L2 activations"), rows)]
    ev = summary.get("eval")
    if ev:
        out += ["", f"{ev['metric']}: float {ev['float']:.2f}  emulated {ev['emulated']:.2f}  "
                    f"integer {ev['integer']:.2f}"]
    out += ["", f"weight bytes: float {summary['bytes']['float']:,}  "
                f"quantised {summary['bytes']['quantised']:,}",
            f"wrote {summary['out']} and {Path(summary['out']).with_suffix('.json')}"]
    return "\n".join(out)
