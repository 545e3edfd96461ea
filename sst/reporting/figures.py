"""Figures of results, attention, inputs and the network itself (matplotlib only, no display).

    python -m sst.reporting.figures architecture -c SEED.ini --out figure/architecture.png
    python -m sst.reporting.figures demo                       # the demo's figures into .cache/demo/results/figures/demo/
    python -m sst.reporting.figures demo --readme              # replace the committed figure/demo_*.png (docs/outputs.md), on purpose
    python -m sst.reporting.figures explain -c SEED.ini --run sub01_ses1   # attention and input maps of one finished run

What each function draws (each writes PNGs into a folder and returns their paths):
    run_figures(results, summary, out_dir)        curves.png: train/val loss and accuracy per run;
                                                  confusion.png: confusion summed over runs, counts and
                                                  row-normalised; per_subject.png: accuracy per subject
                                                  with mean +- std and the paper's mean
    attention_figures(checkpoint, sessions, out)  attention_spatial.png: each A3DB's spatial attention per
                                                  class on the scalp grid; attention_depth.png: its
                                                  spectral / temporal attention per band / time step
    input_figures(session, cfg, out_dir)          inputs_spectral.png, inputs_temporal.png: the input maps
                                                  of one sample per class, electrodes marked
    architecture_figure(cfg, out_path)            stages, output shapes and parameters of both streams in
                                                  both block orders, read off the model built by model.py
    comparison_figure(...), ablation_figure(...)  run.py --compare / --ablation: paired runs across result
                                                  folders; our ablation bars beside the paper's (0-100%)
A baseline's folder ([model] name) gets selection.png (its choice of C) instead of curves.png.
Electrode names are drawn once per figure, on an empty key square, never over a map's values.

Figures are drawn on `matplotlib.figure.Figure` objects, never through pyplot: no backend is
chosen for the caller, no figure is registered globally (nothing to close, no memory growth),
and rcParams are changed only inside `_style()` while a figure is drawn and saved. Colours are
the Okabe-Ito palette and viridis / cividis / RdBu (readable with colour-vision deficiencies).
"""
from __future__ import annotations

import argparse
import io
import math
import os
import re
import tempfile
import textwrap
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import matplotlib
import numpy as np
from matplotlib import patheffects
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyBboxPatch, Patch
from PIL import Image

from sst import cli, config, fileio
from sst.config import Config
from sst.data import datasets, electrodes, inputs, session_store
from sst.errors import UserError, printable
from sst.training import protocols

ROOT = Path(__file__).resolve().parent
DPI = 110
# Okabe & Ito (2008), a palette distinguishable under the common colour-vision deficiencies.
OKABE_ITO = {"blue": "#0072B2", "orange": "#E69F00", "green": "#009E73", "vermillion": "#D55E00",
             "purple": "#CC79A7", "sky": "#56B4E9", "yellow": "#F0E442", "black": "#000000"}
CLASS_COLORS = [OKABE_ITO[k] for k in ("blue", "orange", "green", "purple", "vermillion", "sky")]
STYLE = {
    "font.family": "DejaVu Sans", "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "legend.fontsize": 8, "figure.titlesize": 11,
    "axes.spines.top": False, "axes.spines.right": False, "axes.linewidth": 0.8,
    "axes.prop_cycle": matplotlib.cycler(color=CLASS_COLORS), "image.cmap": "viridis",
    "legend.frameon": False, "savefig.dpi": DPI, "savefig.facecolor": "white",
}
HALO = [patheffects.withStroke(linewidth=1.6, foreground="white")]  # text readable on any colour


@contextmanager
def _style() -> Iterator[None]:
    """The figures' rcParams, restored on exit so that nothing leaks to the caller's plots."""
    with matplotlib.rc_context(STYLE):
        yield


def _save(fig: Figure, path: Path) -> Path:
    """Write `fig` as a 256-colour PNG, atomically (a reader never sees half a file).

    The palette keeps files small enough for a README (anti-aliased lines make thousands of
    colours that full-colour PNG compresses badly) with no visible loss at this resolution.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    buf.seek(0)
    image = Image.open(buf).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    path = Path(path)
    with fileio.atomic_path(path) as tmp:
        image.save(tmp, format="PNG", optimize=True)
    return path


# ----------------------------------------------------------------------------- results of run.py


def run_figures(results: list[dict], summary: dict, out_dir: Path) -> list[Path]:
    """curves.png, confusion.png and per_subject.png for the finished runs of one result folder; for a
    classical baseline (runs without epochs, with a "selection" of C) selection.png instead of curves.png.

    `results`: the runs/<run>.json dicts; `summary`: summary.json as run.summarize writes it.
    Works for any number of runs, with or without validation history, any protocol (LOSO included).
    """
    out_dir = Path(out_dir)
    fileio.make_folder(out_dir)
    results = sorted(results, key=lambda r: (r["subject"], r["session"]))
    with _style():
        if not any(r["history"] for r in results) and all(r.get("selection") for r in results):
            first = _selection_figure(results, summary, out_dir / "selection.png")
        else:
            first = _curves_figure(results, summary, out_dir / "curves.png")
        return [first,
                _confusion_figure(results, summary, out_dir / "confusion.png"),
                _per_subject_figure(results, summary, out_dir / "per_subject.png")]


def _protocol(name) -> protocols.Protocol:
    """The entry of a record's protocol; one of an unknown name (a received folder) labels runs as trial does."""
    return protocols.PROTOCOLS.get(name) or protocols.PROTOCOLS["trial"]


def _run_title(r: dict) -> str:
    who = _protocol(r.get("protocol")).run_label(r["subject"])
    seed = re.search(r"_rep\d+$", str(r.get("run", "")))         # [training] repeats: the seed's run
    return f"{who} ses{r['session']}{seed[0].replace('_', ' ') if seed else ''}: {100 * r['accuracy']:.1f}%"


def _grid_shape(n: int, max_cols: int = 9) -> tuple[int, int]:
    """(rows, cols) of a small-multiples sheet: about 1.6 times wider than tall, at most max_cols."""
    cols = max(1, min(n, max_cols, math.ceil(math.sqrt(1.6 * n))))
    rows = math.ceil(n / cols)
    return rows, math.ceil(n / rows)  # as few empty panels as the row count allows


def _curves_figure(results: list[dict], summary: dict, path: Path) -> Path:
    """One panel per run: loss (left axis, solid) and accuracy (right axis, dashed), train and
    validation, the checkpoint's epoch as a dotted line. Axes are shared so runs compare at a glance."""
    rows, cols = _grid_shape(len(results))
    # Margins and gaps in inches, so text keeps its size whatever the number of panels.
    left, right, top, bottom, gap_h = 0.65, 0.6, 0.8, 0.5, 0.42
    gap_w = 0.18 if cols > 4 else 0.32  # inner panels show no tick labels on their right axis
    panel_w = min(4.2, (12.5 - left - right - gap_w * (cols - 1)) / cols)
    panel_h = min(2.6, max(1.15, 0.62 * panel_w))
    width = left + right + cols * panel_w + gap_w * (cols - 1)
    height = top + bottom + rows * panel_h + gap_h * (rows - 1)
    width = max(width, 6.5)
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height,
                        wspace=gap_w / panel_w, hspace=gap_h / panel_h)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    small = len(results) > 12
    title_size = 7 if small else 9

    losses = [h[k] for r in results for h in r["history"] for k in ("train_loss", "val_loss") if k in h]
    top_loss = float(np.nanpercentile(losses, 99)) * 1.08 if losses else 1.0  # one diverged epoch must not flatten all
    max_epoch = max([len(r["history"]) for r in results] + [1])
    train_c, val_c = OKABE_ITO["blue"], OKABE_ITO["orange"]
    any_val = False
    for i, ax in enumerate(axes):
        if i >= len(results):
            ax.set_visible(False)
            continue
        r, col = results[i], i % cols
        h = r["history"]
        epoch = [e["epoch"] for e in h]
        acc_ax = ax.twinx()
        acc_ax.spines["right"].set_visible(True)
        ax.plot(epoch, [e["train_loss"] for e in h], color=train_c, lw=1.3)
        acc_ax.plot(epoch, [100 * e["train_accuracy"] for e in h], color=train_c, lw=1.1, ls="--")
        if any("val_loss" in e for e in h):
            any_val = True
            ve = [e for e in h if "val_loss" in e]
            ax.plot([e["epoch"] for e in ve], [e["val_loss"] for e in ve], color=val_c, lw=1.3)
            acc_ax.plot([e["epoch"] for e in ve], [100 * e["val_accuracy"] for e in ve], color=val_c, lw=1.1, ls="--")
        if r.get("best_epoch"):
            ax.axvline(r["best_epoch"], color="0.35", lw=1.0, ls=":")
        if not h:
            ax.text(0.5, 0.5, "no epochs", transform=ax.transAxes, ha="center", va="center", color="0.4")
        ax.set_xlim(0.5, max_epoch + 0.5)
        ax.set_ylim(0, top_loss)
        acc_ax.set_ylim(0, 102)
        ax.set_title(_run_title(r), fontsize=title_size, pad=3)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4 if small else 6, integer=True))
        ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4))
        acc_ax.set_yticks([0, 50, 100])
        for a in (ax, acc_ax):
            a.tick_params(labelsize=6.5 if small else 8, length=2.5, pad=1.5)
        if i + cols < len(results):  # a panel below: its x labels do the job
            ax.tick_params(labelbottom=False)
        else:
            ax.set_xlabel("epoch", fontsize=8, labelpad=1)
        if col:
            ax.tick_params(labelleft=False)
        else:
            ax.set_ylabel("loss (cross-entropy)", fontsize=8)
        if col != cols - 1 and i != len(results) - 1:
            acc_ax.tick_params(labelright=False)
        else:
            acc_ax.set_ylabel("accuracy (%)", fontsize=8)

    handles = [Line2D([], [], color=train_c, lw=1.3, label="train loss"),
               Line2D([], [], color=train_c, lw=1.1, ls="--", label="train accuracy")]
    if any_val:
        handles += [Line2D([], [], color=val_c, lw=1.3, label="validation loss"),
                    Line2D([], [], color=val_c, lw=1.1, ls="--", label="validation accuracy")]
    handles.append(Line2D([], [], color="0.35", lw=1.0, ls=":", label="checkpoint epoch"))
    n = len(results)
    fig.suptitle(f"Training curves: {summary.get('dataset', '')}, protocol {summary.get('protocol', '?')}, "
                 f"{n} run{'s' if n != 1 else ''} (panel title: run, test accuracy)", y=1 - 0.08 / height, va="top",
                 fontsize=11 if width > 8 else 10)
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.36 / height), ncol=len(handles),
               fontsize=8, handlelength=2.2, columnspacing=1.2)
    return _save(fig, path)


def _selection_figure(results: list[dict], summary: dict, path: Path) -> Path:
    """A baseline's choice of C: training and validation accuracy against C, one thin line per run, the
    chosen C of each run as a dot, the median over runs as thick lines."""
    fig = Figure(figsize=(6.8, 4.2))
    ax = fig.subplots()
    colours = {"train_accuracy": OKABE_ITO["blue"], "val_accuracy": OKABE_ITO["orange"]}
    for key, colour in colours.items():
        curves = [(np.array([row["C"] for row in r["selection"]]), 100 * np.array([row.get(key, np.nan)
                                                                                   for row in r["selection"]]))
                  for r in results if any(key in row for row in r["selection"])]
        for c, acc in curves:
            ax.plot(c, acc, color=colour, lw=0.6, alpha=0.35)
        if curves and all(len(c) == len(curves[0][0]) for c, _ in curves):
            ax.plot(curves[0][0], np.median([acc for _, acc in curves], axis=0), color=colour, lw=2.2,
                    label=f"{'training' if key == 'train_accuracy' else 'validation'} accuracy, median over runs")
    chosen = [(r["C"], 100 * next((row.get("val_accuracy", np.nan) for row in r["selection"] if row["C"] == r["C"]),
                                  np.nan)) for r in results if "C" in r]
    if chosen:
        ax.scatter(*zip(*chosen), s=16, color="black", zorder=4, label="chosen C of each run (validation)")
    ax.set_xscale("log")
    ax.set_ylim(0, 100)
    ax.set_xlabel("C (inverse regularisation strength)")
    ax.set_ylabel("accuracy (%)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"{summary.get('model', 'baseline')}: choice of C on the validation windows "
                 f"({summary.get('dataset', '')}, protocol {summary.get('protocol', '?')}, {len(results)} runs)")
    fig.tight_layout()
    return _save(fig, path)


def short_label(text: str, width: int = 22, lines: int = 3) -> str:
    """`text` (a folder or variant name) as a tick label: control characters escaped (errors.printable), "$"
    shown as a dollar (matplotlib would read "$...$" as TeX), wrapped at spaces, hyphens never split, no word cut in the middle: a word longer than `width` and a
    label longer than `lines` lines end in an ellipsis."""
    text = re.sub(r",(?=\S)", ", ", printable(text, limit=None))     # result folders: model.a=x,model.b=y
    text = text.replace("$", "\\$")     # a folder's "$...$" is shown as written, never read as TeX (mathtext)
    words = [w if len(w) <= width else w[:width - 1] + "…" for w in text.split()]
    wrapped = textwrap.wrap(" ".join(words), width, break_long_words=False, break_on_hyphens=False) or [""]
    if len(wrapped) > lines:
        wrapped = wrapped[:lines]
        wrapped[-1] = wrapped[-1][:width - 1].rstrip() + "…"
    return "\n".join(wrapped)


def comparison_figure(labels: list[str], accuracy: list[dict], title: str, stats: dict, path: Path) -> Path:
    """comparison.png: accuracy % of each result folder (x), one grey line per subject-session joining its
    runs across folders (repeats averaged), each folder's mean as a black diamond; under each folder but
    the first, its paired difference from the first and the Wilcoxon p (`stats`: experiments.paired_statistics
    by label). The y axis spans 0-100%."""
    x = np.arange(len(labels))
    with _style():
        fig = Figure(figsize=(max(5.0, 1.9 * len(labels) + 2.2), 4.8))
        ax = fig.subplots()
        keys = sorted(accuracy[0])
        for rank, key in enumerate(keys):     # each run a little apart: identical runs of two folders stay visible
            ys = np.array([a.get(key, np.nan) for a in accuracy], dtype=float)
            jitter = 0.16 * (rank / max(len(keys) - 1, 1) - 0.5)
            ax.plot(x + jitter, ys, color="0.55", lw=0.8, alpha=0.6, marker="o", ms=3, zorder=2)
        means = [np.mean(list(a.values())) for a in accuracy]
        ax.scatter(x, means, marker="D", s=46, color="black", zorder=4, label="mean of the folder's runs")
        ticks = []
        for label in labels:
            text = short_label(label, 28)
            if label in stats:
                st = stats[label]
                p = "p -" if st["p"] is None else f"p {st['p']:.3f}"
                text += f"\n{st['difference']:+.2f} points, {p}\n(n = {st['n']})"
            ticks.append(text)
        ax.set_xticks(x, ticks, fontsize=7.5)
        ax.set_xlim(-0.5, len(labels) - 0.5)
        ax.set_ylim(0, 100)
        ax.set_ylabel("test accuracy (%)")
        ax.legend(loc="lower left", fontsize=8)
        ax.set_title(f"{title}: one line per subject-session (repeats averaged, spread sideways)\n"
                     f"paired differences and Wilcoxon p against {short_label(labels[0], 60, 1)}", fontsize=9)
        fig.tight_layout()
        fileio.make_folder(Path(path).parent)
        return _save(fig, path)


def ablation_figure(bars: list[tuple], title: str, path: Path) -> Path:
    """ablation.png: the paper's two ablation charts (streams, attention) with our accuracy (mean +- std over
    runs) beside the paper's bar. `bars`: (name, chart "both" | "streams" | "attention", (mean, std) or None,
    paper value, a (streams, attention) pair for the full model, or None). The y axis spans 0-100%."""
    charts = {"streams": "streams", "attention": "attention"}
    with _style():
        fig = Figure(figsize=(10.5, 4.6))
        axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 4]})
        any_paper = False
        for ax, (chart, what) in zip(axes, charts.items()):
            rows = [b for b in bars if b[1] in (chart, "both")]
            x = np.arange(len(rows))
            for i, (name, _, ours, paper) in enumerate(rows):
                if isinstance(paper, tuple):
                    paper = paper[0] if chart == "streams" else paper[1]
                shift = 0.2 if paper is not None and ours is not None else 0.0   # a bar alone sits on its tick
                if ours is not None:
                    ax.bar(i - shift, ours[0], 0.38, yerr=ours[1], color=OKABE_ITO["blue"], capsize=3, zorder=2)
                    ax.text(i - shift, ours[0] + ours[1] + 1.5, f"{ours[0]:.1f}", ha="center", fontsize=7.5)
                if paper is not None:
                    any_paper = True
                    ax.bar(i + shift, paper, 0.38, color=OKABE_ITO["vermillion"], alpha=0.8, zorder=2)
                    ax.text(i + shift, paper + 1.5, f"{paper:.1f}", ha="center", fontsize=7.5)
            ax.set_xticks(x, [short_label(r[0], 18) for r in rows], fontsize=8)
            ax.set_ylim(0, 105)
            ax.set_ylabel("test accuracy (%)")
            ax.set_title(f"{what}", fontsize=9.5)
        handles = [Patch(color=OKABE_ITO["blue"], label="ours: mean ± std over runs")]
        if any_paper:
            handles.append(Patch(color=OKABE_ITO["vermillion"], alpha=0.8,
                                 label="paper (SEED, read off its charts, authors' protocol)"))
        fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, bbox_to_anchor=(0.5, 0.0))
        fig.suptitle(f"Ablation study, {title}", fontsize=10.5)
        fig.tight_layout(rect=(0, 0.07, 1, 1))
        fileio.make_folder(Path(path).parent)
        return _save(fig, path)


def _confusion_figure(results: list[dict], summary: dict, path: Path) -> Path:
    """Confusion matrix summed over runs: counts, and rows normalised to 100% (recall on the diagonal)."""
    cm = np.asarray(summary.get("confusion_matrix") or np.sum([r["confusion_matrix"] for r in results], axis=0))
    n_class = cm.shape[0]
    names = datasets.get(summary["dataset"]).class_names
    rows = cm.sum(1, keepdims=True)
    pct = np.divide(100.0 * cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    fig = Figure(figsize=(9.2, 4.3))
    axes = fig.subplots(1, 2)
    panels = [(cm, "counts", Normalize(0, max(cm.max(), 1)), "{:.0f}", "test windows"),
              (pct, "row-normalised (% of true class)", Normalize(0, 100), "{:.1f}", "% of true class")]
    for ax, (m, title, norm, fmt, unit) in zip(axes, panels):
        im = ax.imshow(m, cmap="cividis", norm=norm)
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=10 if n_class <= 4 else 8,
                    color="black" if norm(v) > 0.55 else "white")
        ax.set_xticks(range(n_class), names, rotation=0 if n_class <= 4 else 45)
        ax.set_yticks(range(n_class), names)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(title)
        ax.spines[:].set_visible(False)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label=unit)
    acc = 100 * np.trace(cm) / max(cm.sum(), 1)
    n = len(results)
    fig.suptitle(f"Confusion on the test windows, summed over {n} run{'s' if n != 1 else ''} "
                 f"({summary.get('dataset', '')}, protocol {summary.get('protocol', '?')}; pooled accuracy {acc:.1f}%)")
    fig.tight_layout()
    return _save(fig, path)


def _per_subject_figure(results: list[dict], summary: dict, path: Path) -> Path:
    """Bars: mean test accuracy per subject (held-out subject for LOSO); dots: its runs (sessions);
    the mean +- std over all runs as a line and band; the paper's mean as a dashed line."""
    protocol = summary.get("protocol", "?")
    per_subject = {int(s): v for s, v in summary["per_subject"].items()}
    subjects = sorted(per_subject)
    x = np.arange(len(subjects))
    width = max(6.0, min(10.5, 2.5 + 0.5 * len(subjects)))
    fig = Figure(figsize=(width, 4.6))
    ax = fig.subplots()
    mean, std = summary["mean_accuracy"], summary["std_accuracy"]
    n = summary.get("n_runs", len(results))
    ax.bar(x, [per_subject[s] for s in subjects], width=0.7, color=OKABE_ITO["sky"], zorder=1, label="subject mean")
    runs: dict[tuple[int, int], list[float]] = {}     # repeats ([training] repeats) averaged per run
    for r in results:
        runs.setdefault((r["subject"], r["session"]), []).append(100 * r["accuracy"])
    by_subject = {s: [float(np.mean(v)) for (j, _), v in sorted(runs.items()) if j == s] for s in subjects}
    for xi, s in zip(x, subjects):
        accs = by_subject[s]
        offsets = np.linspace(-0.18, 0.18, len(accs)) if len(accs) > 1 else [0.0]
        ax.scatter(xi + np.asarray(offsets), accs, s=14, color="black", zorder=4, lw=0,
                   label="one run (session)" if xi == 0 else None)
    ax.axhspan(mean - std, mean + std, color="0.3", alpha=0.22, lw=0, zorder=2, label=f"± 1 std ({std:.1f} points)")
    ax.axhline(mean, color="black", lw=1.5, zorder=3, label=f"mean over {n} run{'s' if n != 1 else ''}: {mean:.1f}%")
    paper = summary.get("paper_accuracy")
    if paper:
        ax.axhline(paper["mean"], color=OKABE_ITO["vermillion"], lw=1.6, ls="--", zorder=3,
                   label=f"paper: {paper['mean']:.2f} ± {paper['std']:.2f}%\n(authors' protocol: the test\n"
                         f"set chose the checkpoint)")
    n_class = datasets.get(summary["dataset"]).n_classes
    ax.axhline(100 / n_class, color="0.4", lw=1.0, ls=":", zorder=3, label=f"chance ({100 / n_class:.0f}%)")
    ax.set_xticks(x, [str(s) for s in subjects])
    ax.set_xlim(-0.6, len(subjects) - 0.4)
    ax.set_ylim(0, 100)
    ax.set_xlabel(_protocol(protocol).subject_axis)
    ax.set_ylabel("test accuracy (%)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3 if width >= 8 else 2, fontsize=8)
    note = summary.get("protocol_note", "")
    ax.set_title(f"{summary.get('dataset', '')}: test accuracy per subject, protocol {protocol}\n"
                 + textwrap.shorten(note, 110), fontsize=9.5)
    fig.tight_layout()
    return _save(fig, path)


# ----------------------------------------------------------------------------- the scalp grid


def electrode_pixels(width: int) -> np.ndarray:
    """(62, 2) float (row, col) of each electrode in pixel coordinates of a width x width map.

    The geometry of inputs.grid_interpolation_matrix: its lattice spans the 9x9 grid corner
    to corner (pixel p at grid coordinate p * 8 / (width - 1)), so grid cell (r, c) lies at pixel
    (r, c) * (width - 1) / 8 - on a pixel centre when 8 divides width - 1, between pixels for 32.
    """
    return electrodes.GRID_POSITIONS * (width - 1) / (electrodes.GRID_SIZE - 1)


def draw_scalp(ax, image: np.ndarray, width: int, *, cmap: str = "viridis", norm: Normalize | None = None,
               names: bool = False, fontsize: float = 5.0):
    """Draw `image` (h, w) over the square of a width x width input map, nose up, and mark the 62
    electrodes at their pixel positions (names, or dots when `names` is False).

    An (h, w) map with h < width (an attention map after pooling) is stretched over the same
    square: each of its pixels stands for a (width/h) x (width/h) block of input pixels, which is
    what the network's 2x2 poolings and stride-2 stem do, so the electrodes stay where the input put them.
    Returns the image artist (for a colour bar).
    """
    im = ax.imshow(image, cmap=cmap, norm=norm, extent=(-0.5, width - 0.5, width - 0.5, -0.5),
                   interpolation="nearest")
    rc = electrode_pixels(width)
    if names:
        for (r, c), name in zip(rc, electrodes.CHANNELS):
            ax.text(c, r, name, ha="center", va="center", fontsize=fontsize, color="black", path_effects=HALO)
    else:
        ax.scatter(rc[:, 1], rc[:, 0], s=5, c="white", edgecolors="black", linewidths=0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    margin = max(0.0, (width - 1) / (electrodes.GRID_SIZE - 1) / 2 - 0.5)  # half a grid cell: edge electrodes whole
    ax.set_xlim(-0.5 - margin, width - 0.5 + margin)
    ax.set_ylim(width - 0.5 + margin, -0.5 - margin)
    ax.spines[:].set_visible(False)
    return im


def electrode_key(ax, width: int, fontsize: float = 5.0) -> None:
    """The 62 electrode names at their places on an empty input square: the key beside maps drawn with
    dots, so no name is printed over a map's values (a 2-inch panel cannot carry both)."""
    draw_scalp(ax, np.full((width, width), np.nan), width, names=True, fontsize=fontsize)
    ax.set_title("electrodes", fontsize=8.5)
    ax.spines[:].set_visible(True)
    ax.spines[:].set_color("0.8")


# ----------------------------------------------------------------------------- inputs


def _one_per_class(label: np.ndarray, trial: np.ndarray) -> dict[int, int]:
    """class -> index of one sample: the middle window of the class's first trial (deterministic)."""
    out = {}
    for c in np.unique(label):
        idx = np.flatnonzero(label == c)
        idx = idx[trial[idx] == trial[idx].min()]
        out[int(c)] = int(idx[len(idx) // 2])
    return out


def input_figures(session, cfg: Config, out_dir: Path) -> list[Path]:
    """inputs_spectral.png and inputs_temporal.png: the network's two input maps for one window per class.

    `session`: a preprocessed.Session (de (N, 62, 5), eeg (N, 62, T) or None, label (N,), trial (N,)).
    Maps are built as training builds them: electrode values times inputs.interpolation_matrix(width).
    DE is z-scored per electrode and band over the session (bands differ by several log units, so
    raw DE would show only the band offsets); raw EEG is shown in microvolts. `cfg` gives the map
    width, the dataset (class and band names) and the raw segment length (times on the temporal
    strip). The temporal figure is skipped when the session has no raw EEG.
    """
    out_dir = Path(out_dir)
    fileio.make_folder(out_dir)
    width, dataset, window_ms = cfg.data.input_width, cfg.data.dataset, 1000 * cfg.data.temporal_window_s
    names = datasets.get(dataset).class_names
    picks = _one_per_class(np.asarray(session.label), np.asarray(session.trial))
    matrix = inputs.interpolation_matrix(width)
    where = f"sub{session.subject:02d} ses{session.session}"
    paths = []
    with _style():
        z, _, _ = inputs.zscore(np.asarray(session.de, dtype=np.float64), np.arange(len(session.label)),
                                inputs.NORMALISATION_AXES["de"])
        maps = inputs.electrodes_to_maps(z[list(picks.values())], matrix, width)          # (K, W, W, bands)
        bands = [f"{b}\n{lo}-{hi} Hz" for b, (lo, hi) in zip(electrodes.BANDS, datasets.get(dataset).bands_hz)]
        paths.append(_map_sheet(maps, width, [names[c] for c in picks], bands,
                                f"Spatial-spectral input ({where}): DE per band on the {width}x{width} map, "
                                f"one window per class", "DE, z-score over the session", out_dir / "inputs_spectral.png",
                                names_on_first=True))
        if session.eeg is not None:
            eeg = np.asarray(session.eeg, dtype=np.float64)[list(picks.values())]  # (K, 62, T) uV
            T = eeg.shape[-1]
            steps = list(range(0, T, 3))
            maps = inputs.electrodes_to_maps(eeg[..., steps], matrix, width)
            cols = [f"t = {k * window_ms / T:.0f} ms" for k in steps]
            paths.append(_map_sheet(maps, width, [names[c] for c in picks], cols,
                                    f"Spatial-temporal input ({where}): raw EEG, every 3rd of {T} time points",
                                    "EEG (µV)", out_dir / "inputs_temporal.png", names_on_first=False))
    return paths


def _map_sheet(maps: np.ndarray, width: int, row_names: Sequence[str], col_names: Sequence[str], title: str,
               unit: str, path: Path, names_on_first: bool) -> Path:
    """Rows = samples (classes), columns = map channels; one symmetric colour scale for the sheet. Maps
    show electrodes as dots; `names_on_first`: an electrode key (names on an empty square) before the
    first column, in the first row."""
    K, _, _, C = maps.shape
    panel = 1.9 if C <= 5 else 1.3
    key = int(bool(names_on_first))
    fig = Figure(figsize=(0.9 + (C + 1.37 * key) * panel + 0.9, 0.9 + K * panel))
    fig.subplots_adjust(left=(0.2 if key else 0.8) / fig.get_figwidth(), right=1 - 0.95 / fig.get_figwidth(),
                        top=1 - 0.75 / fig.get_figheight(), bottom=0.1 / fig.get_figheight(), wspace=0.06, hspace=0.06)
    # the key's column is wider than a map's: the gap holds the rows' names (the first map column's y labels)
    grid = fig.subplots(K, C + key, squeeze=False, gridspec_kw={"width_ratios": [1.37] * key + [1] * C})
    if key:
        electrode_key(grid[0, 0], width, fontsize=4.5 if panel < 1.9 else 5.0)
        for ax in grid[:, 0]:
            ax.set_anchor("W")
        for ax in grid[1:, 0]:
            ax.set_visible(False)
    axes = grid[:, key:]
    lim = float(np.percentile(np.abs(maps), 99)) or 1.0
    norm = Normalize(-lim, lim)  # symmetric: white = 0 (= the session mean for z-scores; empty grid cells)
    for k in range(K):
        for c in range(C):
            ax = axes[k, c]
            im = draw_scalp(ax, maps[k, ..., c], width, cmap="RdBu_r", norm=norm)
            if k == 0:
                ax.set_title(col_names[c], fontsize=8.5)
            if c == 0:
                ax.set_ylabel(row_names[k], fontsize=9.5)
    cax = fig.add_axes((1 - 0.8 / fig.get_figwidth(), 0.15, 0.15 / fig.get_figwidth(), 0.65))
    fig.colorbar(im, cax=cax, label=unit, extend="both")
    fig.suptitle(title + " (nose up; dots: electrodes)", fontsize=10, y=1 - 0.1 / fig.get_figheight(), va="top")
    return _save(fig, path)


# ----------------------------------------------------------------------------- attention


def attention_weights(checkpoint, sessions: list, *, per_class: int = 400, batch_size: int = 128
                      ) -> tuple[Config, np.ndarray, dict[str, dict[str, np.ndarray]]]:
    """A checkpoint's attention weights over sessions' windows (TrainedModel.attention_weights:
    inputs normalised with the run's training statistics and mapped as in training, at most `per_class`
    windows per class). `checkpoint`: its path, or the TrainedModel loaded from it. Returns (config,
    labels (n,), {block: {"spatial": (n, H, W), "spectral_temporal": (n, D)}}) with only the parts the
    model has."""
    from sst.models.trained import TrainedModel

    trained = checkpoint if isinstance(checkpoint, TrainedModel) else TrainedModel.load(checkpoint)
    label, weights = trained.attention_weights(sessions, per_class=per_class, batch_size=batch_size)
    return trained.cfg, label, weights


def attention_figures(checkpoint, sessions: list, out_dir: Path, *, per_class: int = 400) -> list[Path]:
    """attention_spatial.png and attention_depth.png of one trained checkpoint, averaged per class.

    `sessions`: preprocessed.Session objects whose windows are fed through the network (e.g. the
    run's own subject-session; pass only test windows' sessions to explain test behaviour).
    Spatial: each A3DB block's (H, W) weights drawn over the input square with the electrodes
    (see draw_scalp). Depth: the block's weights per band (spectral) / time step (temporal).
    """
    import torch

    from sst.models.trained import TrainedModel

    trained = checkpoint if isinstance(checkpoint, TrainedModel) else TrainedModel.load(checkpoint)
    cfg, label, weights = attention_weights(trained, sessions, per_class=per_class)
    out_dir = Path(out_dir)
    fileio.make_folder(out_dir)
    names = datasets.get(cfg.data.dataset).class_names
    classes = [c for c in range(cfg.model.nb_class) if (label == c).any()]
    run = Path(getattr(checkpoint, "path", checkpoint)).stem
    silent = sorted({type(m).__name__ for n, m in trained.net.named_modules()
                     if n.rpartition(".")[2].startswith("attention") and not hasattr(m, "weights")
                     and not isinstance(m, torch.nn.Identity)})
    if silent:      # a plugin's block: drawn only if it says what its weights are
        print(printable(f"{run}: no attention figure of the {', '.join(silent)} blocks: "
                        f"{'their class has' if len(silent) > 1 else 'its class has'} no weights(x) method "
                        f"(model.A3DBAttention.weights shows what it returns)", limit=None))
    paths = []
    with _style():
        spatial = {b: w["spatial"] for b, w in weights.items() if "spatial" in w}
        depth = {b: w["spectral_temporal"] for b, w in weights.items() if "spectral_temporal" in w}
        if spatial:
            paths.append(_attention_spatial_figure(cfg, run, spatial, label, classes, names,
                                                   out_dir / "attention_spatial.png"))
        if depth:
            paths.append(_attention_depth_figure(cfg, run, depth, label, classes, names,
                                                 out_dir / "attention_depth.png"))
    return paths


def _block_title(block: str, shape: tuple) -> str:
    stream, _, name = block.partition(".")
    return f"{stream}\n{name}\n({'x'.join(map(str, shape))})"


def _attention_spatial_figure(cfg: Config, run: str, spatial: dict, label: np.ndarray, classes: list[int],
                              names: list[str], path: Path) -> Path:
    """Rows = A3DB blocks, columns = classes; colour scale shared along a row (classes comparable). Maps
    show electrodes as dots; the first column's top panel is their key (names on an empty square)."""
    width = cfg.data.input_width
    rows, cols, panel = len(spatial), len(classes), 1.9
    left, right, top = 0.35, 0.95, 0.85
    fig = Figure(figsize=(left + (cols + 1) * panel + 0.7 + right, top + rows * (panel + 0.12) + 0.15))
    W, H = fig.get_figwidth(), fig.get_figheight()
    fig.subplots_adjust(left=left / W, right=1 - right / W, top=1 - top / H, bottom=0.15 / H, wspace=0.05, hspace=0.12)
    # the key's column, then a gap for the blocks' names (the first map column's y labels)
    grid = fig.subplots(rows, cols + 1, squeeze=False, gridspec_kw={"width_ratios": [1.37] + [1] * cols})
    electrode_key(grid[0, 0], width)
    for ax in grid[1:, 0]:
        ax.set_visible(False)
    axes = grid[:, 1:]
    for ax in grid[:, 0]:
        ax.set_anchor("W")
    for i, (block, w) in enumerate(spatial.items()):
        means = np.stack([w[label == c].mean(0) for c in classes])  # (classes, H, W)
        lo, hi = float(means.min()), float(means.max())
        norm = Normalize(lo, hi if hi > lo else lo + 1e-6)
        for j, c in enumerate(classes):
            ax = axes[i, j]
            im = draw_scalp(ax, means[j], width, cmap="viridis", norm=norm)
            if i == 0:
                ax.set_title(f"{names[c]} (n={int((label == c).sum())})", fontsize=9)
            if j == 0:
                ax.set_ylabel(_block_title(block, means.shape[1:]), fontsize=8.5)
        pos = axes[i, -1].get_position()
        cax = fig.add_axes((pos.x1 + 0.12 / W, pos.y0 + 0.1 * pos.height, 0.12 / W, 0.8 * pos.height))
        fig.colorbar(im, cax=cax).ax.tick_params(labelsize=7)
        cax.set_ylabel("weight", fontsize=7.5)
    fig.suptitle(f"Spatial attention of each A3DB block, mean per class ({run}, {cfg.model.attention_activation};"
                 f" nose up)", fontsize=10, y=1 - 0.08 / H, va="top")
    fig.text(0.5, 1 - 0.42 / H, "each block's H x W map spans the input square; one colour scale per row; "
             "dots: electrodes, named in the key on the left",
             ha="center", va="top", fontsize=8, color="0.25")
    return _save(fig, path)


def _depth_axis(cfg: Config, stream: str, D: int) -> tuple[list[str], str]:
    """Tick labels and axis label for a block's depth axis (bands or time; pooled slices approximated)."""

    import model as model_lib

    if model_lib.STREAM_SOURCES.get(stream, "de" if stream == "spectral" else "eeg") == "de":     # DE bands
        if D == cfg.data.specInput_length == len(electrodes.BANDS):
            return list(electrodes.BANDS), "DE band"
        return [f"{j + 1}" for j in range(D)], f"depth slice (pooled from {cfg.data.specInput_length} bands, low to high)"
    window_ms = 1000 * cfg.data.temporal_window_s
    return [f"{(j + 0.5) * window_ms / D:.0f}" for j in range(D)], \
        f"time in the {window_ms:.0f} ms segment (ms, centre of the slice)"


def _attention_depth_figure(cfg: Config, run: str, depth: dict, label: np.ndarray, classes: list[int],
                            names: list[str], path: Path) -> Path:
    """One panel per block (columns: streams), grouped bars per depth index, one colour per class."""
    streams: dict[str, list[str]] = {}
    for block in depth:
        streams.setdefault(block.partition(".")[0], []).append(block)
    rows, cols = max(len(b) for b in streams.values()), len(streams)
    fig = Figure(figsize=(0.9 + 5.4 * cols, 0.95 + 2.25 * rows))
    fig.subplots_adjust(left=0.75 / fig.get_figwidth(), right=1 - 0.2 / fig.get_figwidth(),
                        top=1 - 0.95 / fig.get_figheight(), bottom=0.6 / fig.get_figheight(), hspace=0.75, wspace=0.18)
    axes = fig.subplots(rows, cols, squeeze=False)
    width = 0.8 / len(classes)
    for j, (stream, blocks) in enumerate(streams.items()):
        for i in range(rows):
            ax = axes[i, j]
            if i >= len(blocks):
                ax.set_visible(False)
                continue
            w = depth[blocks[i]]
            D = w.shape[1]
            x = np.arange(D)
            for k, c in enumerate(classes):
                mean = w[label == c].mean(0)
                ax.bar(x + (k - (len(classes) - 1) / 2) * width, mean, width=width, color=CLASS_COLORS[k % len(CLASS_COLORS)],
                       label=names[c])
            ticks, xlabel = _depth_axis(cfg, stream, D)
            step = max(1, math.ceil(D / 13))
            ax.set_xticks(x[::step], ticks[::step])
            ax.set_xlabel(xlabel, fontsize=8)
            # Bars start at 0: a zoomed axis would make sigmoid weights near 0.5 look like large differences.
            # The class means' range is written out instead, for differences too small to see.
            means = np.stack([w[label == c].mean(0) for c in classes])
            lo, hi = float(means.min()), float(means.max())
            ax.set_ylim(min(0.0, 1.1 * lo), max(1.18 * hi, 1e-3) if hi > 0 else 1e-3)
            ax.set_ylabel("weight", fontsize=8)
            ax.text(0.99, 0.98, f"class means {lo:.3f} to {hi:.3f}", transform=ax.transAxes, ha="right", va="top",
                    fontsize=7, color="0.3")
            ax.set_title(f"{blocks[i]} (depth {D})", fontsize=9)
    handles = [Patch(color=CLASS_COLORS[k % len(CLASS_COLORS)], label=names[c]) for k, c in enumerate(classes)]
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), bbox_to_anchor=(0.5, 1 - 0.42 / fig.get_figheight()))
    fig.suptitle(f"Spectral / temporal attention of each A3DB block, mean per class ({run})", fontsize=10,
                 y=1 - 0.08 / fig.get_figheight(), va="top")
    return _save(fig, path)


# ----------------------------------------------------------------------------- architecture

GLOBAL_POOL = "BN-ReLU-global pool"  # the stream's end (model: stream.global_pool), named apart from the temporal stem's pool
STAGE_COLORS = {"input": "#E8E8E8", "stem": "#FBE3B5", "pool": "#E8E8E8", "attention": "#F6C9AE",
                "denseblock": "#BFDDF2", "transition": "#B8E3D3", "head": "#EBD0E2"}
STAGE_LABELS = {"input": "input map, pooling", "stem": "stem convolution", "pool": "pooling", "attention": "A3DB attention",
                "denseblock": "3D dense block", "transition": "transition", "head": "head (Dense, dropout)"}


def _stage_kind(name: str) -> str:
    return next((k for k in STAGE_COLORS if name.startswith(k)), "pool")


def model_stages(cfg: Config) -> dict:
    """Stages of the network built from `cfg`, read off the model: each stream records its stages'
    output shapes as it is built (`stream.stages`); parameters are summed per stage with p.numel().

    Returns {"streams": {stream: [(stage, shape, parameters), ...]}, "head": [...], "total": int}
    with shapes channels-last as in docs/reference.md ("32x32x5x24" = H x W x D x C; "48" for feature vectors);
    a stream's rows run from "input" to GLOBAL_POOL. The stages' parameters add up to `total`,
    the model's trainable parameters.
    """
    import model as model_lib

    net = model_lib.build_model(cfg)

    def params(module) -> int:
        return sum(p.numel() for p in module.parameters() if p.requires_grad)

    out = {"streams": {}, "head": []}
    for sname, stream in net.named_streams().items():
        H, W, D = stream.input_size
        if not isinstance(stream, model_lib.DenseStream3D):     # a stream of another kind: one box
            out["streams"][sname] = [("input", f"{H}x{W}x{D}", 0), (sname, str(stream.feature_size), params(stream))]
            continue
        rows = [("input", f"{H}x{W}x{D}", 0)]
        rows += [(n, "x".join(map(str, stream.stages[n]["shape"])), params(m)) for n, m in stream.features.named_children()]
        rows.append((GLOBAL_POOL, str(stream.feature_size), params(stream.global_pool)))
        out["streams"][sname] = rows
    width = net.feature_size
    for n, m in net.head.named_children():
        width = getattr(m, "out_features", width)  # dropout keeps the width
        out["head"].append((n, str(width), params(m)))
    out["total"] = params(net)
    return out


def architecture_figure(cfg: Config, out_path: Path) -> Path:
    """Both block orders of the network side by side, each stage a box with its name, output shape
    (H x W x D x C) and trainable parameters, streams in columns, the head below; everything is read
    off the model that model.build_model(cfg) builds (see model_stages)."""
    orders = ("paper", "official")
    tables = {o: model_stages(cfg.replace(model={"block_order": o})) for o in orders}
    n_rows = max(_arch_rows(t)[1] for t in tables.values())
    n_streams = max(len(t["streams"]) for t in tables.values())
    col_w = 2.75
    with _style():
        fig = Figure(figsize=(len(orders) * (n_streams * col_w + 0.3) + 0.2, 1.5 + 0.5 * n_rows))
        H = fig.get_figheight()
        fig.subplots_adjust(left=0.01, right=0.99, top=1 - 0.95 / H, bottom=0.4 / H, wspace=0.04)
        for ax, order in zip(fig.subplots(1, len(orders)), orders):
            _draw_architecture(ax, cfg, order, tables[order], n_rows)
        handles = [Patch(facecolor=c, edgecolor="0.3", label=STAGE_LABELS[k]) for k, c in STAGE_COLORS.items()
                   if k != "pool"]
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), bbox_to_anchor=(0.5, 0.05 / H),
                   fontsize=8.5, handlelength=1.4, columnspacing=1.0)
        d = cfg.data
        fig.suptitle(f"SST-EmotionNet as built by model.py from {Path(cfg.source).name if cfg.source else 'the config'}"
                     f" ({d.dataset}, {d.input_width}x{d.input_width} maps, {cfg.model.nb_class} classes): "
                     f"stages with output shape and trainable parameters\n"
                     f"shape H x W x D x C = map height, width, depth (DE bands or EEG time points), feature channels",
                     fontsize=10.5, y=1 - 0.1 / H, va="top", linespacing=1.5)
        out_path = Path(out_path)
        fileio.make_folder(out_path.parent)
        return _save(fig, out_path)


def _arch_rows(table: dict) -> tuple[list[str], int]:
    """Stage names of the streams merged in order (so equal stages line up) and the row count with the head."""
    names: list[str] = []
    for rows in table["streams"].values():
        prev = -1
        for name, _, _ in rows:
            if name in names:
                prev = names.index(name)
            else:
                names.insert(prev + 1, name)
                prev += 1
    return names, len(names) + 1 + len(table["head"])


def _draw_architecture(ax, cfg: Config, order: str, table: dict, n_rows: int) -> None:
    """One block order: stream columns of stage boxes joined by arrows, the head centred below."""
    names, _ = _arch_rows(table)
    streams = list(table["streams"])
    box_w, box_h, col_gap = 2.45, 0.78, 2.75
    xs = {s: col_gap * i for i, s in enumerate(streams)}
    row_y = {name: -i for i, name in enumerate(names)}
    stream_titles = {"spectral": "spatial-spectral stream", "temporal": "spatial-temporal stream"}
    arrow = dict(arrowstyle="-|>", color="0.35", lw=0.9, shrinkA=0, shrinkB=0, mutation_scale=8)

    def box(x, y, name, shape, params, kind):
        ax.add_patch(FancyBboxPatch((x - box_w / 2, y - box_h / 2), box_w, box_h, boxstyle="round,pad=0,rounding_size=0.12",
                                    facecolor=STAGE_COLORS[kind], edgecolor="0.3", lw=0.8))
        ax.text(x, y + 0.16, name, ha="center", va="center", fontsize=9.5, fontweight="bold")
        detail = shape if kind == "input" else f"{shape}   {params:,} params"
        ax.text(x, y - 0.19, detail, ha="center", va="center", fontsize=8.5, family="DejaVu Sans Mono")

    for s in streams:
        rows = table["streams"][s]
        x = xs[s]
        total = sum(p for _, _, p in rows)
        ax.text(x, 0.55, f"{stream_titles.get(s, s)}\n{total:,} params", ha="center", va="bottom", fontsize=9,
                fontweight="bold", linespacing=1.3)
        prev_y = None
        for name, shape, params in rows:
            y = row_y[name]
            box(x, y, name, shape, params, "input" if name == "input" else _stage_kind(name))
            if prev_y is not None:
                ax.annotate("", (x, y + box_h / 2), (x, prev_y - box_h / 2), arrowprops=arrow)
            prev_y = y
    centre = float(np.mean(list(xs.values())))
    top = -len(names) - 0.75  # first head box; the gap above holds the concatenation
    widths = [r[-1][1] for r in table["streams"].values()]
    concat = f"concatenate: {' + '.join(widths)} features" if len(widths) > 1 else f"{widths[0]} features"
    join_y = top + box_h / 2 + 0.42
    ax.text(centre, join_y, concat, ha="center", va="center", fontsize=8, color="0.2",
            bbox=dict(boxstyle="round,pad=0.25", facecolor="white", edgecolor="0.6", lw=0.6))
    for s in streams:
        end = row_y[table["streams"][s][-1][0]] - box_h / 2
        ax.plot([xs[s], xs[s], centre], [end, join_y, join_y], color="0.35", lw=0.9, zorder=0)
    ax.annotate("", (centre, top + box_h / 2), (centre, join_y - 0.17), arrowprops=arrow)
    head_names = {"hidden": "Dense, linear", "dropout": f"p = {cfg.model.dropout}", "classifier": "Dense, logits"}
    prev_y = None
    for i, (name, shape, params) in enumerate(table["head"]):
        yy = top - i
        box(centre, yy, f"head.{name}: {head_names.get(name, name)}", shape, params, "head")
        if prev_y is not None:
            ax.annotate("", (centre, yy + box_h / 2), (centre, prev_y - box_h / 2), arrowprops=arrow)
        prev_y = yy
    order_note = {"paper": "paper order (figure 3): attention before every dense block",
                  "official": "official order (authors' code): attention after each transition"}[order]
    ax.set_title(f"{order_note}\ntotal trainable parameters: {table['total']:,}", fontsize=10, pad=4)
    ax.set_xlim(-box_w / 2 - 0.1, xs[streams[-1]] + box_w / 2 + 0.1)
    ax.set_ylim(-(n_rows - 0.05), 1.5)
    ax.axis("off")


# ----------------------------------------------------------------------------- command line

def explain_run(checkpoint_path: Path, preprocessed_root: Path, out_dir: Path) -> list[Path]:
    """Attention and input figures of one run: its checkpoint fed with its own subject-session
    (every window; for LOSO runs the held-out subject's session). When today's code differs from the code
    that trained the run (a line says what differs), the figures are today's code's, so they go beside
    `out_dir`, into <out_dir>.code-<today's code digest>, never over the figures of the code that trained it."""
    from sst.models.trained import TrainedModel

    trained = TrainedModel.load(checkpoint_path)
    if trained.code_changes is not None:
        out_dir = Path(out_dir).with_name(f"{Path(out_dir).name}.code-{trained.code_digest}")
    ckpt = trained.checkpoint
    cfg = trained.cfg.replace(path={"preprocessed_root": Path(preprocessed_root)})
    sessions = session_store.load_preprocessed(cfg, subjects=[ckpt["subject"]], sessions=[ckpt["session"]])
    paths = attention_figures(trained, sessions, out_dir)
    paths += input_figures(sessions[0], cfg, out_dir)
    return paths


def demo_figures(demo_dir: Path, out_dir: Path) -> list[Path]:
    """figure/demo_*.png from the results `python run.py --demo` leaves under demo_dir."""
    results_dir, preprocessed = Path(demo_dir) / "results", Path(demo_dir) / "SEED_preprocessed"
    if not (results_dir / "summary.json").is_file():
        raise UserError(f"{results_dir}: no demo results; run `python run.py --demo` first")
    try:    # its own demo's files, read as any result folder's: regular files of bounded size
        summary = fileio.read_json(results_dir / "summary.json")
        results = [fileio.read_json(p) for p in fileio.list_folder(fileio.real_folder(results_dir / "runs", "--demo-dir"),
                                                                   "*.json")]
    except (OSError, ValueError) as e:
        raise UserError(f"{results_dir}: demo results not readable ({e}); run `python run.py --demo` again") from None
    if not results:
        raise UserError(f"{results_dir}: no finished demo runs; run `python run.py --demo` first")
    out_dir = Path(out_dir)
    fileio.make_folder(out_dir)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".demo-") as tmp:
        first = fileio.child(results_dir / "checkpoints", f"{results[0]['run']}.pt", f"{results_dir}/runs")
        made = run_figures(results, summary, Path(tmp)) + explain_run(first, preprocessed, Path(tmp))
        final = []
        for p in made:
            target = out_dir / f"demo_{p.name}"
            os.replace(p, target)
            final.append(target)
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    arch = sub.add_parser("architecture", help="draw the network built from an INI file")
    arch.add_argument("-c", "--config", default="SEED.ini", help="INI file (default SEED.ini)")
    arch.add_argument("--out", type=Path, default=ROOT / "figure" / "architecture.png", help="PNG to write")
    demo = sub.add_parser("demo", help="figures of `python run.py --demo`, written to its result folder")
    demo.add_argument("--demo-dir", type=Path, default=ROOT / ".cache" / "demo", help="run.py's --demo-dir")
    demo.add_argument("--out-dir", type=Path, help="folder for demo_*.png (default: <demo-dir>/results/figures/demo)")
    demo.add_argument("--readme", action="store_true",
                      help="replace the committed figures, figure/demo_*.png, shown in docs/outputs.md (only on purpose)")
    explain = sub.add_parser("explain", help="attention and input figures of one finished run")
    explain.add_argument("-c", "--config", default="SEED.ini", help="INI file of the run (for its paths)")
    explain.add_argument("--run", required=True, help="run name, e.g. sub01_ses1")
    explain.add_argument("--out-dir", type=Path, help="default: <result_path>/figures/<run>")
    args = cli.refuse_empty_values(parser).parse_args(argv)

    if args.command == "architecture":
        paths = [architecture_figure(config.load_config(args.config), args.out)]
    elif args.command == "demo":
        if args.readme and args.out_dir is not None:
            raise UserError("--readme writes figure/demo_*.png; it does not take --out-dir")
        out_dir = ROOT / "figure" if args.readme else args.out_dir or args.demo_dir / "results" / "figures" / "demo"
        paths = demo_figures(args.demo_dir, out_dir)
    else:
        from sst.training import runspec

        spec = runspec.run_named(args.run, "--run")
        cfg = config.load_config(args.config)
        root = cfg.path.result_path
        paths = explain_run(root / "checkpoints" / f"{spec.name}.pt", cfg.path.preprocessed_root,
                            args.out_dir or fileio.child(root / "figures", spec.name))
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    cli.cli_main(main)
