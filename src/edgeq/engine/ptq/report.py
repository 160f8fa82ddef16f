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


def _pct(x: float) -> str:
    return f"{x:.1f}%"


def _m(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def exploration_json(res: dict) -> dict:
    """The explore result with its dataclasses as JSON."""
    def keys_to_str(d):
        return {k: {str(b): v for b, v in per.items()} for k, per in d.items()}

    return {**{k: v for k, v in res.items() if k not in ("analysis", "best_config")},
            "one_at_a_time": keys_to_str(res["one_at_a_time"]),
            "groups": keys_to_str(res["groups"]),
            "best_config": res["best_config"].to_json()}


def exploration_markdown(res: dict, final: dict | None = None) -> str:
    """QUENN-style tables: sensitivity one variable at a time, groups, the search result."""
    bits = list(res["analysis"].bits)
    metric = res["metric"]
    lines = [f"# PTQ exploration of {res['model']}", "",
             f"Float network: {metric or 'no task metric'} {_m(res['fp_metric'])}; budget "
             f"max drop {res['budget']['max_drop']} points, max L2 {res['budget']['max_l2']}.",
             "", "## Layer analysis (phase 1): layer L2 of the best choice per bit width", "",
             "| variable | " + " | ".join(f"{b} bit" for b in bits) + " |",
             "|---|" + "---|" * len(bits)]
    for key, per in res["analysis"].variables.items():
        lines.append(f"| {key} | " + " | ".join(
            f"{per[b].l2:.3g} ({per[b].quant.method})" for b in bits) + " |")
    lines += ["", "## One variable at a time (others float): network output L2 / "
              f"{metric or 'metric'}", "",
              "| variable | " + " | ".join(f"{b} bit" for b in bits) + " |",
              "|---|" + "---|" * len(bits)]
    for key, per in res["one_at_a_time"].items():
        lines.append(f"| {key} | " + " | ".join(
            f"{per[b]['l2']:.3g} / {_m(per[b]['metric'])}" for b in bits) + " |")
    lines += ["", "## Groups and the whole network", "",
              f"| group | bits | output L2 | {metric or 'metric'} | weight saving | "
              "activation saving |", "|---|---|---|---|---|---|"]
    for group, per in res["groups"].items():
        for b in bits:
            r = per[b]
            lines.append(f"| {group} | {b} | {r['l2']:.3g} | {_m(r['metric'])} | "
                         f"{_pct(r['savings']['weights'])} | {_pct(r['savings']['activations'])} |")
    s = res["search"]
    lines += ["", "## Greedy search: smallest memory within the budget", "",
              f"Output L2 {s['score']['l2']:.3g}, {metric or 'metric'} {_m(s['score']['metric'])};"
              f" memory saved against float32: weights {_pct(s['savings']['weights'])}, "
              f"activation traffic {_pct(s['savings']['activations'])} "
              f"({len(s['steps'])} trials).", "", "| variable | bits |", "|---|---|"]
    lines += [f"| {k} | {b} |" for k, b in s["choice"].items()]
    if final:
        lines += ["", f"Integer IR of the chosen config ({final['path']}): "
                      f"{metric or 'metric'} {_m(final['metric'])}, bit-exact with the "
                      f"emulation: {final['exact']}."]
    return "\n".join(lines) + "\n"
