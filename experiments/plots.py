"""Plots of a sweep (matplotlib is the optional extra ``autoal[plot]``).

curves.png: mean test accuracy vs labels per method, with a ± std band over seeds.
weights.png: AutoAL's strategy weights (lambda_k * mean_i w_ik) and each strategy's share of the picks
(the mean per-pick fraction of the score it contributed), and ALBL's expert probabilities, over rounds.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from experiments.results import RunResult, mean_curves, methods_with_key, selector_series

log = logging.getLogger(__name__)

#: (records' selector key, panel title): AutoAL's two, ALBL's one
WEIGHT_PANELS = (("weights", "strategy weights"),
                 ("contribution", "share of the picks"),
                 ("expert_probs", "expert probabilities"))


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, and safe in worker processes and on servers
    import matplotlib.pyplot as plt

    return plt


def line_style(i: int) -> dict[str, str]:
    """Colour and dash of the i-th line: the 10 colours of the cycle, then dashed, then dotted
    (a sweep of more than ten methods would otherwise reuse colours indistinguishably)."""
    return {"color": f"C{i % 10}", "linestyle": ("-", "--", ":")[(i // 10) % 3]}


def plot_curves(results: Sequence[RunResult], methods: Sequence[str], path: Path, title: str = "") -> bool:
    """Write curves.png; False when no method has a finished run."""
    curves = mean_curves(results, methods)
    if not curves:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, (method, c) in enumerate(curves.items()):
        (line,) = ax.plot(c.labels, c.mean, marker="o", markersize=3, label=f"{method} (n={c.n})",
                          **line_style(i))
        # accuracy lives in [0, 1]; an unclipped ±std band of few seeds pokes out of it
        low, high = (c.mean - c.std).clip(0, 1), (c.mean + c.std).clip(0, 1)
        ax.fill_between(c.labels, low, high, color=line.get_color(), alpha=0.15)
    ax.set_xlabel("labels")
    ax.set_ylabel("test accuracy")
    ax.set_title(title or "mean test accuracy ± std over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def weight_panels(results: Sequence[RunResult], methods: Sequence[str]) -> list[list[tuple[str, str, dict]]]:
    """One row per method that logs any ``WEIGHT_PANELS`` key (every AutoAL variant of a table, not
    just the first), each row its (method, title, series) panels."""
    rows = []
    for method in methods:
        row = [(method, what, selector_series(results, method, key))
               for key, what in WEIGHT_PANELS if methods_with_key(results, [method], key)]
        if row:
            rows.append(row)
    return rows


def plot_weights(results: Sequence[RunResult], methods: Sequence[str], path: Path) -> bool:
    """Write weights.png with a row of panels per method that logs weights; False when none does."""
    rows = weight_panels(results, methods)
    if not rows:
        return False
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    ncols = max(len(row) for row in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(6.5 * ncols, 4.5 * len(rows)), squeeze=False)
    for ax_row, row in zip(axes, rows):
        for ax in ax_row[len(row):]:
            ax.set_visible(False)  # ALBL has one panel beside AutoAL's two
        for ax, (method, what, series) in zip(ax_row, row):
            for i, (name, (rounds, values)) in enumerate(sorted(series.items())):
                ax.plot(rounds, values, marker="o", markersize=3, label=name, **line_style(i))
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("round")
            ax.set_ylabel(what)
            ax.set_title(f"{method}: {what} (mean over seeds)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
