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
import matplotlib.transforms  # noqa: E402
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


LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))
SAVE_KW = {"bbox_inches": "tight", "pad_inches": 0.05}  # the saved image holds every legend


def label_axes(ax, xlabel: str, ylabel: str, title: str | None = None, legend: bool = True,
               legend_loc: str | None = None) -> None:
  """Axis labels (with units), optional panel title, and the legend: outside the panel, to its
  right, so that it covers no data (legend_loc: a corner inside the panel instead)."""
  ax.set_xlabel(xlabel, fontsize=9)
  ax.set_ylabel(ylabel, fontsize=9)
  if title:
    ax.set_title(title, fontsize=10)
  if legend and ax.get_legend_handles_labels()[0]:
    if legend_loc is None:
      ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=7, frameon=False)
    else:
      ax.legend(loc=legend_loc, fontsize=7, frameon=False)


def styles_by(values) -> dict:
  """A line style per distinct value, in order of first appearance (e.g. one per PM size)."""
  out = {}
  for v in values:
    out.setdefault(v, LINESTYLES[len(out) % len(LINESTYLES)])
  return out


def log_ticks(ax, values, axis: str = "x", fmt=None) -> None:
  """A log axis ticked exactly at `values` (e.g. the data sizes trained), labelled by
  format_count, with no minor tick labels (matplotlib's minor labels on a short log range
  overlap)."""
  values = sorted({float(v) for v in values if v and v > 0})
  target = ax.xaxis if axis == "x" else ax.yaxis
  (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
  target.set_major_locator(matplotlib.ticker.FixedLocator(values))
  target.set_major_formatter(matplotlib.ticker.FixedFormatter([(fmt or format_count)(v) for v in values]))
  target.set_minor_locator(matplotlib.ticker.NullLocator())
  target.set_minor_formatter(matplotlib.ticker.NullFormatter())


def log_axis(ax, axis: str = "x") -> None:
  """A log axis with labels at powers of ten only (format_count), minor ticks unlabelled."""
  target = ax.xaxis if axis == "x" else ax.yaxis
  (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
  target.set_major_locator(matplotlib.ticker.LogLocator(base=10, numticks=8))
  target.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: format_count(v)))
  target.set_minor_formatter(matplotlib.ticker.NullFormatter())


def seed_band(ax, xs, ys, color, label: str, linestyle="-", marker=None) -> None:
  """The mean over seeds of several curves (one per seed, cut to the shortest) and a +-1 sd band
  over seeds; one seed draws the line alone."""
  n = min(len(x) for x in xs)
  x = np.nanmean(np.array([np.asarray(v, np.float64)[:n] for v in xs]), axis=0)
  y = np.array([np.asarray(v, np.float64)[:n] for v in ys])
  mean = np.nanmean(y, axis=0)
  ax.plot(x, mean, linestyle=linestyle, marker=marker, color=color, label=label)
  if len(ys) > 1:
    sd = np.nanstd(y, axis=0, ddof=1)
    ax.fill_between(x, mean - sd, mean + sd, color=color, alpha=0.18, linewidth=0)


def running_mean(x, window: int) -> np.ndarray:
  """Mean of each `window` consecutive values: (T,) -> (T - w + 1,) with w = min(window, T),
  y_t = mean(x_t .. x_{t+w-1}); NaN where the window holds a NaN."""
  x = np.asarray(x, np.float64)
  w = max(1, min(window, len(x)))
  return np.convolve(x, np.ones(w) / w, mode="valid")


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
  """Write `<out_dir>/<stem>.png` (150 dpi) and `.pdf`, cropped to every artist (SAVE_KW: legends
  outside the panels are kept, never clipped); close the figure; return both paths."""
  os.makedirs(out_dir, exist_ok=True)
  paths = [os.path.join(out_dir, f"{stem}.{ext}") for ext in ("png", "pdf")]
  for path in paths:
    fig.savefig(path, dpi=DPI, **SAVE_KW)
  plt.close(fig)
  return paths


# ----------------------------------------------------------------------------- layout checks


def saved_extent(fig, renderer):
  """The region `save` writes, in display pixels: with SAVE_KW's bbox_inches="tight" the bounding
  box of every artist, padded; otherwise the figure's own rectangle."""
  if SAVE_KW.get("bbox_inches") != "tight":
    return fig.bbox
  box = fig.get_tightbbox(renderer).padded(SAVE_KW.get("pad_inches", 0.1))
  return matplotlib.transforms.Bbox(box.get_points() * fig.dpi)


def _legends(fig):
  return list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]


def _inside(inner, outer, tol: float = 1.0) -> bool:
  return (inner.x0 >= outer.x0 - tol and inner.y0 >= outer.y0 - tol and inner.x1 <= outer.x1 + tol
          and inner.y1 <= outer.y1 + tol)


def _data_points(ax) -> np.ndarray:
  """(n, 2) display coordinates of every plotted line vertex and marker of a panel."""
  pts = [line.get_transform().transform(np.column_stack(line.get_data()).astype(np.float64))
         for line in ax.get_lines() if len(line.get_xdata())]
  pts += [c.get_offset_transform().transform(c.get_offsets()) for c in ax.collections
          if len(c.get_offsets()) and type(c).__name__ == "PathCollection"]
  pts = [p[np.all(np.isfinite(p), axis=1)] for p in pts]
  return np.concatenate(pts) if pts else np.zeros((0, 2))


def _overlaps(a, b, tol: float = 0.5) -> bool:
  return a.x0 < b.x1 - tol and b.x0 < a.x1 - tol and a.y0 < b.y1 - tol and b.y0 < a.y1 - tol


def _tick_label_boxes(axis, renderer):
  return [t.get_window_extent(renderer) for t in axis.get_ticklabels(which="both")
          if t.get_visible() and t.get_text().strip()]


def layout_problems(fig) -> list[str]:
  """What a reader could not read: a legend outside the saved image (clipped), a legend over a
  data point of a panel (or a figure legend over a panel), two tick labels of one axis that
  overlap. [] when the figure is readable."""
  if not hasattr(fig.canvas, "get_renderer"):  # a closed figure: draw it on a fresh Agg canvas
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig)
  fig.canvas.draw()
  renderer = fig.canvas.get_renderer()
  extent = saved_extent(fig, renderer)
  panels = [ax for ax in fig.axes if ax.get_visible() and type(ax).__name__ != "SecondaryAxis"]
  out = []
  for leg in _legends(fig):
    box = leg.get_window_extent(renderer)
    if not _inside(box, extent):
      out.append(f"legend {box.bounds} is clipped by the saved extent {extent.bounds}")
    for ax in panels:
      if leg in fig.legends and _overlaps(box, ax.get_window_extent(renderer)):
        out.append(f"figure legend overlaps panel {ax.get_title()!r}")
      elif leg is ax.get_legend() and box.count_contains(_data_points(ax)):
        out.append(f"legend of panel {ax.get_title()!r} covers {box.count_contains(_data_points(ax))} data points")
  for ax in fig.axes:
    for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
      boxes = _tick_label_boxes(axis, renderer)
      for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
          if _overlaps(boxes[i], boxes[j]):
            out.append(f"{name} tick labels overlap on panel {ax.get_title()!r}")
  return sorted(set(out))
