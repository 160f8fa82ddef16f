"""PTQ plots (matplotlib, PNG): sensitivity heatmap and histograms with the chosen format."""

from __future__ import annotations

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> str:
    from edgeq.engine.tensor_io import write_atomic

    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100))
    _plt().close(fig)
    return str(path)


def heatmap(analysis, path) -> str:
    """Variables × bit widths → layer L2 (log colour scale)."""
    plt = _plt()
    keys = list(analysis.variables)
    bits = list(analysis.bits)
    data = np.array([[analysis.variables[k][b].l2 for b in bits] for k in keys])
    fig, ax = plt.subplots(figsize=(2 + 0.8 * len(bits), 1 + 0.3 * len(keys)))
    im = ax.imshow(np.log10(np.maximum(data, 1e-12)), aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(bits)), [f"{b} bit" for b in bits])
    ax.set_yticks(range(len(keys)), keys, fontsize=7)
    for i in range(len(keys)):
        for j in range(len(bits)):
            ax.text(j, i, f"{data[i, j]:.2g}", ha="center", va="center", fontsize=6, color="w")
    fig.colorbar(im, ax=ax, label="log10 layer L2")
    ax.set_title("layer sensitivity (L2 vs FP)")
    fig.tight_layout()
    return _save(fig, path)


def histogram(values: np.ndarray, vq, eps_marks: np.ndarray, title: str, path) -> str:
    """Histogram of ``values`` with the representable range (fixed point) or the codebook
    entries (clustered) marked."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(np.ravel(values), bins=100, color="grey")
    for m in eps_marks:
        ax.axvline(m, color="red", lw=0.6)
    ax.set_title(title, fontsize=9)
    ax.set_yscale("log")
    fig.tight_layout()
    return _save(fig, path)
