"""Figures and tables for the book's pages, sized for the text column.

The pages' sections (:mod:`soundclr.book.sections`, which the notebooks call) compute with the
library and draw with these helpers, so every page uses the same sizes, fonts, colours, names and number formats: figures at most ``WIDTH``
inches wide at ``DPI`` (the book's text column is about 730 CSS pixels), the schemes in
one order (cross-entropy, two-stage SupCon, hybrid) under their display names, accuracies
in % with two decimals, and "mean ± sd" with a real "±".
"""
from __future__ import annotations

import io
import math
import struct
import textwrap
import zlib
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.colors import ListedColormap
from matplotlib.lines import Line2D
from matplotlib.text import Text
from matplotlib.ticker import MaxNLocator

from ..analysis import tables
from ..audio.pipeline import Pipeline
from ..schemes import color_of, in_order, label_of
from ..schemes import get as scheme_of

WIDTH = 6.6            # inches: 660 px at DPI (about 670 with the tight margins), inside the 688-px text column
DPI = 100


def style() -> None:
    """Matplotlib defaults for the book: column-wide figures, legible fonts, light grids."""
    plt.rcParams.update({"figure.dpi": DPI, "savefig.dpi": DPI, "figure.figsize": (WIDTH, 3.2), "font.size": 10,
                         "axes.titlesize": 10, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
                         "legend.fontsize": 9, "axes.grid": True, "grid.alpha": 0.3, "figure.constrained_layout.use": True})


TEXT_SIZE_KEY = "soundclr:min-text-px"   # a PNG tEXt key: the smallest text of the figure, in px at its own size


def smallest_text_px(fig) -> float:
    """The font size, in pixels of the saved image, of the smallest visible non-empty text of ``fig``
    (titles, labels, tick labels, legends, annotations); inf when it has none."""
    dpi = plt.rcParams["savefig.dpi"]
    dpi = fig.dpi if dpi == "figure" else float(dpi)
    sizes = [t.get_fontsize() * dpi / 72 for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return min(sizes, default=math.inf)


def png_with_text_size(fig) -> bytes:
    """``fig`` as the inline backend writes it (PNG, tight bounding box), with a tEXt chunk
    :data:`TEXT_SIZE_KEY` holding :func:`smallest_text_px`, so that ``make check-book`` can tell, from
    the built book's images alone, whether any figure text is too small to read."""
    buffer = io.BytesIO()
    fig.canvas.print_figure(buffer, format="png", bbox_inches="tight")
    data = buffer.getvalue()
    body = b"tEXt" + TEXT_SIZE_KEY.encode() + b"\0" + f"{smallest_text_px(fig):.2f}".encode()
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    end_of_header = 8 + 8 + 13 + 4                     # the signature, then the IHDR chunk
    return data[:end_of_header] + chunk + data[end_of_header:]


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    """A table for a page: no index name row, floats with two decimals."""
    out = df.copy()
    out.index.name = None
    out.columns.name = None
    for c in out.columns:
        if pd.api.types.is_float_dtype(out[c]):
            out[c] = out[c].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    return out


def integer_epochs(ax, ticks: int = 4) -> None:
    """At most ``ticks`` + 1 whole-epoch ticks: a third of the column holds 160 epochs without the
    labels running together."""
    ax.xaxis.set_major_locator(MaxNLocator(nbins=ticks, integer=True, min_n_ticks=2))


def spectrogram(ax, image, *, sample_rate: int, hop_length: int, top_db: float = 80.0, colorbar: bool = True,
                title: str | None = None):
    """A log-mel image with time in seconds, mel bands, and a dB colour bar."""
    image = np.asarray(image)
    seconds = image.shape[1] * hop_length / sample_rate
    im = ax.imshow(image, origin="lower", aspect="auto", cmap="magma", vmin=-top_db, vmax=0,
                   extent=(0, seconds, 0, image.shape[0]))
    ax.set(xlabel="time (s)", ylabel="mel band")
    ax.grid(False)
    if title:
        ax.set_title(title, loc="left")
    if colorbar:
        ax.figure.colorbar(im, ax=ax, label="dB re max", pad=0.01)
    return im


def wave(ax, signal, *, sample_rate: int, title: str | None = None, seconds: float | None = None):
    """A wave ``signal (samples,)`` against time in seconds, on an x axis ``seconds`` long (default: the signal's)."""
    signal = np.asarray(signal)
    t = np.arange(len(signal)) / sample_rate
    ax.plot(t, signal, lw=0.5, color="#333333")
    ax.set(xlabel="time (s)", ylabel="amplitude")
    if seconds:
        ax.set_xlim(0, seconds)
    if title:
        ax.set_title(title, loc="left")


def learning_curves(curves: pd.DataFrame, scheme: str):
    """Test-fold accuracy per fold (mean over seeds) and the training loss per stage, each on its own
    axis (stage 1 and stage 2 of the two-stage scheme minimise different losses)."""
    stages = sorted(curves["stage"].unique())
    fig, axes = plt.subplots(1, 1 + len(stages), figsize=(WIDTH, 2.9), layout="constrained")
    acc = curves.dropna(subset=["test_acc"]).groupby(["fold", "epoch"])["test_acc"].mean().unstack("fold") * 100
    for fold in acc.columns:
        axes[0].plot(acc.index, acc[fold], lw=1, label=f"fold {fold}", marker="o" if len(acc) <= 3 else None, ms=4)
    axes[0].set(xlabel="epoch", ylabel="test-fold accuracy (%)", title="after each epoch")
    if len(acc.columns) > 1:   # on the accuracy panel only (the colours are folds there, nowhere else)
        axes[0].legend(title="test fold", labels=[str(f) for f in acc.columns], loc="lower right", fontsize=7,
                       title_fontsize=7, ncol=min(len(acc.columns), 3), handlelength=1.2, columnspacing=0.8,
                       frameon=True, framealpha=0.8)
    names = {1: scheme_of(scheme).loss_name, 2: "cross-entropy (stage 2)"}
    for ax, stage in zip(axes[1:], stages):
        d = curves[curves.stage == stage].groupby("epoch")["train_loss"]
        mean, lo, hi = d.mean(), d.min(), d.max()
        # grey, not a colour of the accuracy panel's folds: these curves pool every fold and seed
        ax.plot(mean.index, mean, color="#333333", lw=1.2, marker="o" if len(mean) <= 3 else None, ms=4)
        ax.fill_between(mean.index, lo, hi, color="#888888", alpha=0.3, lw=0)
        ax.set(xlabel="epoch", ylabel=names[stage], title="mean, range over runs")
    for ax in axes:
        integer_epochs(ax)
    return fig


def fold_bars(df: pd.DataFrame, metric: str = "final_acc"):
    """Fig. 4 from the runs ``df`` (:func:`soundclr.runs.store.frame` rows): per test fold one bar per scheme, the
    mean over seeds, with the sd over seeds as an error bar where a bar has more than one run. The
    legend sits above the axes. The y axis starts at 0; when every bar is high (above 30 %) it is
    broken instead (a short 0-based strip under the zoomed range, with break marks) so that the
    differences stay visible and the cut is not hidden."""
    g = df.groupby(["scheme", "fold"])[metric]
    mean, sd, n = g.mean().mul(100).unstack("fold"), g.std().mul(100).unstack("fold"), g.size().unstack("fold")
    schemes = in_order(mean.index)
    folds = list(mean.columns)
    sd = sd.where(n > 1)                      # one run: no spread to draw
    low = np.nanmin((mean - sd.fillna(0)).values)
    cut = 10 * math.floor((low - 3) / 10)     # a round number under every bar and its error bar
    broken = cut >= 30
    if broken:
        fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(WIDTH, 3.0), height_ratios=[7, 1],
                                         layout="constrained")
        axes = [top, bottom]
    else:
        fig, top = plt.subplots(figsize=(WIDTH, 3.0), layout="constrained")
        axes = [top]
    x = np.arange(len(folds))
    width = 0.8 / len(schemes)
    for ax in axes:
        for i, s in enumerate(schemes):
            ax.bar(x + (i - (len(schemes) - 1) / 2) * width, mean.loc[s], width, yerr=sd.loc[s].values,
                   color=color_of(s), label=label_of(s), capsize=2,
                   error_kw={"elinewidth": 0.9, "ecolor": "#222222", "capthick": 0.9})
        ax.grid(axis="x", visible=False)
    top.set_ylabel("accuracy (%)")
    axes[-1].set_xticks(x, [str(f) for f in folds])
    axes[-1].set_xlabel("test fold")
    if broken:
        break_axis(bottom, top, cut, vertical=True)
    else:
        top.set_ylim(0, 100)
    fig.legend(*top.get_legend_handles_labels(), loc="outside upper center", ncol=panel_grid(len(schemes))[1], frameon=False)
    return fig


def interval_bars(labels: Sequence[str], means: Sequence[float], lows: Sequence[float], highs: Sequence[float],
                  colors: Sequence[str] | None = None, xlabel: str = "accuracy (%)"):
    """Horizontal bars from 0 with their 95 % intervals as error bars, on the same kind of axis as Fig. 4
    (:func:`fold_bars`): it starts at 0; when every bar and interval is high (above 30 %) it is broken
    instead (a short 0-based strip left of the zoomed range, with break marks), so that the differences
    stay visible and the cut is not hidden. Returns the figure."""
    labels = [textwrap.fill(str(label), 34) for label in labels]
    y = np.arange(len(labels))
    means, lows, highs = (np.asarray(v, dtype=float) for v in (means, lows, highs))
    err = np.nan_to_num(np.array([means - lows, highs - means]))
    low = np.nanmin(np.concatenate([means, lows]))
    cut = 10 * math.floor((low - 3) / 10)
    broken = cut >= 30
    height = 0.6 * len(labels) + 1.0
    if broken:
        fig, (left, right) = plt.subplots(1, 2, sharey=True, figsize=(WIDTH, height), width_ratios=[1, 7],
                                          layout="constrained")
        axes = [left, right]
    else:
        fig, right = plt.subplots(figsize=(WIDTH, height), layout="constrained")
        axes = [right]
    for ax in axes:
        ax.barh(y, means, xerr=err, color=colors or "#4c72b0", capsize=3, alpha=0.85)
        ax.grid(axis="y", visible=False)
    axes[0].set_yticks(y, labels)
    axes[0].invert_yaxis()
    right.set_xlabel(xlabel)
    if broken:
        break_axis(left, right, cut, vertical=False)
    else:
        right.set_xlim(0, 100)
    return fig


def break_axis(strip, zoom, cut: float, *, vertical: bool) -> None:
    """A broken accuracy axis: ``zoom`` shows ``cut``-100 %, ``strip`` (a seventh of its size, below it when
    ``vertical``, left of it otherwise) the 0-based start at the same scale, with break marks between them."""
    lim, ticks, grid_axis = ("set_ylim", "set_yticks", "x") if vertical else ("set_xlim", "set_xticks", "y")
    getattr(zoom, lim)(cut, 100)
    getattr(strip, lim)(0, (100 - cut) / 7)        # the same scale as the zoomed axis
    getattr(strip, ticks)([0])
    strip.grid(False)
    near, far = ("top", "bottom") if vertical else ("right", "left")
    strip.spines[near].set_visible(False)
    zoom.spines[far].set_visible(False)
    zoom.tick_params(axis=grid_axis, **({"bottom": False} if vertical else {"left": False}))
    slant = [(-1, -0.5), (1, 0.5)] if vertical else [(-0.5, -1), (0.5, 1)]
    marks = {"marker": slant, "markersize": 10, "linestyle": "none", "color": "k", "mec": "k", "mew": 1, "clip_on": False}
    if vertical:
        zoom.plot([0, 1], [0, 0], transform=zoom.transAxes, **marks)
        strip.plot([0, 1], [1, 1], transform=strip.transAxes, **marks)
        zoom.figure.get_layout_engine().set(h_pad=0.06, hspace=0)
    else:
        strip.plot([1, 1], [0, 1], transform=strip.transAxes, **marks)
        zoom.plot([0, 0], [0, 1], transform=zoom.transAxes, **marks)
        zoom.figure.get_layout_engine().set(w_pad=0.06, wspace=0)


def confusion(ax, matrix, names: Sequence[str], title: str):
    m = np.asarray(matrix, dtype=float)
    m = m / np.clip(m.sum(1, keepdims=True), 1, None)
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
    n = len(names)
    small = n > 12
    ax.set_xticks(range(n), [] if small else names, rotation=90, fontsize=8)
    ax.set_yticks(range(n), [] if small else names, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    ax.grid(False)
    return im


def confusion_panels(df: pd.DataFrame):
    """A confusion matrix per scheme of ``df`` (summary rows; summed over its folds and seeds, rows normalised),
    side by side in the registry's order, one colour bar. Returns the figure."""
    shown = in_order(df.scheme)
    rows, cols = panel_grid(len(shown))
    fig, grid = plt.subplots(rows, cols, figsize=(WIDTH, 2.9 * rows), squeeze=False)
    axes = list(grid.flat)[:len(shown)]
    for ax in list(grid.flat)[len(shown):]:
        ax.set_visible(False)                        # the last row's empty places
    for i, (ax, scheme) in enumerate(zip(axes, shown, strict=True)):
        cm, names = tables.confusion(df[df.scheme == scheme])
        im = confusion(ax, cm, names, label_of(scheme))
        if i % cols:
            ax.set_ylabel("")
            ax.set_yticklabels([])
        if i + cols < len(shown):                    # a panel below it shows the predicted classes
            ax.set_xlabel("")
            ax.set_xticklabels([])
    fig.colorbar(im, ax=axes, fraction=0.03, label="share of the true class")
    return fig


def panel_grid(n: int, most: int = 3) -> tuple[int, int]:
    """Rows and columns for ``n`` panels of one kind with at most ``most`` to a row, the rows as even as can be:
    3 -> (1, 3), 4 -> (2, 2), 5 -> (2, 3)."""
    rows = max(1, math.ceil(n / most))
    return rows, max(1, math.ceil(n / rows))


def class_legend(ax, names: Sequence[str], cmap, *, below: bool = False) -> None:
    """The classes' colours: right of ``ax`` for a few classes; under the whole figure, in columns,
    for many (ESC-50's 50 would not fit beside it), or wherever ``below``."""
    handles = [Line2D([], [], marker=class_marker(i, len(names)), ls="", color=cmap(i), markersize=5, label=n)
               for i, n in enumerate(names)]
    if len(names) <= 12 and not below:
        ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    else:
        fig = ax.figure
        fig.set_figheight(fig.get_figheight() + 0.16 * math.ceil(len(names) / 5))   # room for the rows
        fig.legend(handles=handles, loc="outside lower center", ncol=5, fontsize=7, frameon=False,
                   handletextpad=0.2, columnspacing=0.8)


def class_colors(n: int):
    """A colour map with ``n`` distinct colours (``cmap(i)`` is class ``i``'s): the qualitative tab10
    and tab20, and for more classes tab20, tab20b and tab20c together (60 colours), never a
    continuous map whose neighbours look alike."""
    if n <= 10:
        return plt.get_cmap("tab10", max(n, 1))
    if n <= 20:
        return plt.get_cmap("tab20", n)
    colors = [c for name in ("tab20", "tab20b", "tab20c") for c in plt.get_cmap(name).colors]
    if n > len(colors):
        return plt.get_cmap("hsv", n)
    # tab20 pairs a dark and a light shade; take the dark ones first so that neighbours differ most
    colors = colors[0::2] + colors[1::2]
    return ListedColormap(colors[:n])


MARKERS = "os^Dv<>pXP"


def class_marker(i: int, n: int) -> str:
    """Class ``i``'s marker: ten shapes, so that up to ten classes differ in shape as well as colour (for
    colours that look alike, e.g. tab10's pink and purple); one shape, the circle, for more classes."""
    return MARKERS[i % len(MARKERS)] if n <= len(MARKERS) else "o"


def class_scatter(ax, xy, labels, cmap, *, untrained: bool = False, seed: int = 0):
    """A 2-D embedding ``xy (points, 2)`` coloured by class ``labels (points,)``, every class visible:
    the points are drawn in a random interleaved order (in layers, so no class is buried under
    another), semi-transparent, smaller when there are many, and with a shape per class when there are
    ten or fewer (so that colours that look alike still differ). ``untrained``: the map no loss trained
    (cross-entropy's projection head), drawn faded on a grey background."""
    xy, labels = np.asarray(xy), np.asarray(labels)
    order = np.random.default_rng(seed).permutation(len(labels))
    size = float(np.clip(2400 / max(len(labels), 1), 4, 24))
    # one scatter call draws one marker shape, so the random order is drawn in eight layers, each holding every
    # class's share of it: no class lies wholly under another
    for layer, chunk in enumerate(np.array_split(order, min(8, len(order)) or 1)):
        for c in np.unique(labels[chunk]):
            pick = chunk[labels[chunk] == c]
            ax.scatter(xy[pick, 0], xy[pick, 1], color=cmap(int(c)), s=size, marker=class_marker(int(c), cmap.N),
                       alpha=0.45 if untrained else 0.75, linewidths=0, zorder=2 + layer)
    ax.set_xticks([])
    ax.set_yticks([])
    if untrained:
        ax.set_facecolor("#ececec")
        for spine in ax.spines.values():
            spine.set_linestyle((0, (3, 2)))
            spine.set_edgecolor("#888888")


def _explorer_title(freq_masks, freq_mask_width, time_masks, time_mask_width, scale_max, noise_std, draw) -> str:
    """The explorer's title in words: "no masks" or "2 frequency masks up to 8 bands wide, ..."."""
    def masks(count, kind, width, unit):
        return f"{count} {kind} mask{'s' if count != 1 else ''} up to {width} {unit} wide" if count and width else ""
    parts = [p for p in (masks(freq_masks, "frequency", freq_mask_width, "mel bands"),
                         masks(time_masks, "time", time_mask_width, "frames")) if p] or ["no masks"]
    noise = f"white noise of sd {noise_std:g}" if noise_std else "no noise"
    # wrapped: a title wider than the figure widens the saved image past the text column
    return textwrap.fill(f"training draw {draw}: {', '.join(parts)}; scaled by up to x{scale_max:g}; {noise}", 72)


def augmentation_explorer(cfg, waves, lengths, *, interactive: bool = True):
    """One training draw of the pipeline for other settings: sliders for the mask counts and widths,
    the scaling range and white noise (in Jupyter Lab with ipywidgets); without them (the static
    book), the preset's own settings. ``waves (1, samples)`` and ``lengths (1,)``: the clip, as a
    :class:`~soundclr.data.bank.WaveBank` batch holds it."""
    cfg = cfg.resolved()
    a = cfg.augment

    def draw(freq_masks=a.freq_masks, freq_mask_width=a.freq_mask_width, time_masks=a.time_masks,
             time_mask_width=a.time_mask_width, scale_max=a.scale_max, noise_std=0.0, draw=1):
        p = Pipeline.from_config(cfg.override(freq_masks=freq_masks, freq_mask_width=freq_mask_width, time_masks=time_masks,
                                              time_mask_width=time_mask_width, scale_max=max(1.0, scale_max))).train()
        x = p(waves, lengths, keys=torch.tensor([draw * 7919 + 11]), noise_std=noise_std,
              noise_generator=torch.Generator().manual_seed(draw))[0, 0]
        fig, ax = plt.subplots(figsize=(WIDTH, 2.6))
        spectrogram(ax, x, sample_rate=cfg.data.sample_rate, hop_length=cfg.features.hop_length,
                    top_db=cfg.features.top_db,
                    title=_explorer_title(freq_masks, freq_mask_width, time_masks, time_mask_width, scale_max,
                                          noise_std, draw))
        plt.show()

    if interactive:
        try:
            import ipywidgets as w  # only in Jupyter Lab (the sliders); a book build has no widgets
        except ImportError:
            interactive = False
    if not interactive:
        draw()
        return None
    mels, frames = cfg.features.n_mels, 1 + cfg.data.clip_samples // cfg.features.hop_length
    # Labels in words, at full width (the default width cuts them to "freq_mas..."), on sliders wide enough to use.
    look = dict(style={"description_width": "initial"}, layout=w.Layout(width="32em"))
    w.interact(draw,
               freq_masks=w.IntSlider(a.freq_masks, 0, 4, description="frequency masks f", **look),
               freq_mask_width=w.IntSlider(a.freq_mask_width, 0, mels // 2, description="max. width F (mel bands)", **look),
               time_masks=w.IntSlider(a.time_masks, 0, 4, description="time masks t", **look),
               time_mask_width=w.IntSlider(a.time_mask_width, 0, frames // 2, description="max. width T (frames)", **look),
               scale_max=w.FloatSlider(a.scale_max, min=1.0, max=2.0, step=0.05, description="scale up to x", **look),
               noise_std=w.SelectionSlider(options=[0.0, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2], value=0.0,
                                           description="white noise (sd)", **look),
               draw=w.IntSlider(1, 1, 20, description="random draw", **look))
    return None     # not interact's return value: a notebook would print the function's repr under the sliders
