"""Shared matplotlib style for the paper-style figures (Agg backend: no display needed).

Every figure: labelled axes with units, a legend, a title naming the paper figure it
mirrors ("cf. Bai et al. Fig 7"), saved as PNG (150 dpi) and PDF by `save`.
"""

from __future__ import annotations

import os
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

DPI = 150
STYLE = {
    "figure.facecolor": "white", "axes.facecolor": "white", "axes.grid": True,
    "grid.alpha": 0.3, "grid.linewidth": 0.6, "axes.spines.top": False, "axes.spines.right": False,
    "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 7, "legend.frameon": False,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "lines.linewidth": 1.6, "lines.markersize": 4,
    "figure.titlesize": 11, "savefig.bbox": "tight",
}


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 4.2, height: float = 3.3, **kw):
  """(fig, axes) with the house style; axes is always a flat list."""
  with plt.rc_context(STYLE):
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **kw)
  fig.set_layout_engine("constrained")
  for ax in axes.flat:
    _style_axes(ax)
  return fig, list(axes.flat)


def _style_axes(ax) -> None:
  for key, value in (("top", False), ("right", False)):
    ax.spines[key].set_visible(value)
  ax.grid(True, alpha=0.3, linewidth=0.6)
  ax.tick_params(labelsize=8)


def size_colors(sizes: Sequence) -> dict:
  """Colour per size (sorted small -> large along viridis, like the paper's size ramps)."""
  sizes = list(sizes)
  cmap = plt.get_cmap("viridis")
  if len(sizes) == 1:
    return {sizes[0]: cmap(0.35)}
  return {s: cmap(0.9 * i / (len(sizes) - 1)) for i, s in enumerate(sizes)}


def label_axes(ax, xlabel: str, ylabel: str, title: str | None = None, legend: bool = True,
               legend_loc: str = "best") -> None:
  """Axis labels (with units), optional panel title, and the legend."""
  ax.set_xlabel(xlabel, fontsize=9)
  ax.set_ylabel(ylabel, fontsize=9)
  if title:
    ax.set_title(title, fontsize=10)
  if legend:
    ax.legend(loc=legend_loc, fontsize=7, frameon=False)


def figure_legend(fig, axes, ncol: int | None = None):
  """One legend for a multi-panel figure, below the panels, with each label once (panels share styles)."""
  handles, labels = [], []
  for ax in axes:
    for handle, label in zip(*ax.get_legend_handles_labels()):
      if label not in labels:
        handles.append(handle)
        labels.append(label)
  return fig.legend(handles, labels, loc="outside lower center", ncol=ncol or min(len(labels), 4),
                    fontsize=7, frameon=False)


def has_legend(fig) -> bool:
  """A figure-level legend, or a legend on every visible panel."""
  panels = [ax for ax in fig.axes if ax.get_visible() and type(ax).__name__ != "SecondaryAxis"]
  return bool(fig.legends) or all(ax.get_legend() is not None for ax in panels)


def size_label(size, params) -> str:
  """'25k' for a size named by its count, else '25k (24.6k params)'."""
  count = format_count(params)
  return str(size) if str(size) == count else f"{size} ({count} params)"


def suptitle(fig, text: str, paper_figs: str) -> None:
  """Figure title ending with the paper figure mirrored, e.g. "(cf. Bai et al. Fig 7)"."""
  fig.suptitle(f"{text} (cf. {paper_figs})", fontsize=11)


def figure_title(fig) -> str:
  """The suptitle text ('' if none); used by tests and the CLI summary."""
  return fig._suptitle.get_text() if fig._suptitle is not None else ""


def format_count(x: float) -> str:
  """1234567 -> '1.2M', 4000 -> '4k' (for legends)."""
  for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
    if abs(x) >= div:
      v = x / div
      return f"{v:.0f}{suffix}" if v == round(v) or v >= 100 else f"{v:.3g}{suffix}"
  return f"{x:.3g}"


def errorbar_line(ax, x, mean, std, label: str, color, linestyle: str = "-", marker: str = "o") -> None:
  """Mean line with a +-std band (the paper's seed spread); std of NaN (one seed) draws no band."""
  x, mean, std = (np.asarray(v, dtype=np.float64) for v in (x, mean, std))
  ax.plot(x, mean, linestyle=linestyle, marker=marker, color=color, label=label)
  if np.any(np.isfinite(std) & (std > 0)):
    std = np.nan_to_num(std)
    ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.18, linewidth=0)


def integer_locator():
  """Tick locator for count axes (turns, n)."""
  return matplotlib.ticker.MaxNLocator(integer=True)


def save(fig, out_dir: str, stem: str) -> list[str]:
  """Write `<out_dir>/<stem>.png` (150 dpi) and `.pdf`; close the figure; return both paths."""
  os.makedirs(out_dir, exist_ok=True)
  paths = [os.path.join(out_dir, f"{stem}.{ext}") for ext in ("png", "pdf")]
  for path in paths:
    fig.savefig(path, dpi=DPI)
  plt.close(fig)
  return paths
