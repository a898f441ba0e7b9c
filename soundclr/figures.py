"""Figures and tables for the book's pages, sized for the text column.

The notebooks compute with the library and draw with these helpers, so every page uses
the same sizes, fonts, colours, names and number formats: figures at most ``WIDTH``
inches wide at ``DPI`` (the book's text column is about 730 CSS pixels), the schemes in
one order (cross-entropy, two-stage SupCon, hybrid) under their display names, accuracies
in % with two decimals, and "mean ± sd" with a real "±".
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from .experiment import SCHEME_LABEL

WIDTH = 6.6            # inches: 660 px at DPI (about 670 with the tight margins), inside the 688-px text column
DPI = 100
SCHEMES = ("ce", "supcon", "hybrid")
SCHEME_COLOR = {"ce": "#4c72b0", "supcon": "#dd8452", "hybrid": "#55a868"}


def style() -> None:
    """Matplotlib defaults for the book: column-wide figures, legible fonts, light grids."""
    import matplotlib.pyplot as plt
    plt.rcParams.update({"figure.dpi": DPI, "savefig.dpi": DPI, "figure.figsize": (WIDTH, 3.2), "font.size": 10,
                         "axes.titlesize": 10, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
                         "legend.fontsize": 9, "axes.grid": True, "grid.alpha": 0.3, "figure.constrained_layout.use": True})


def pm(mean: float, sd: float | None = None, digits: int = 2) -> str:
    """``"92.86 ± 0.46"`` (or just the mean when there is no spread)."""
    if sd is None or (isinstance(sd, float) and math.isnan(sd)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    """A table for a page: no index name row, floats with two decimals."""
    out = df.copy()
    out.index.name = None
    out.columns.name = None
    for c in out.columns:
        if pd.api.types.is_float_dtype(out[c]):
            out[c] = out[c].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    return out


def scheme_index(df: pd.DataFrame, column: str | None = None) -> pd.DataFrame:
    """Rows in the order CE, SupCon, hybrid, labelled with the display names."""
    key = df[column] if column else df.index
    order = {s: i for i, s in enumerate(SCHEMES)}
    df = df.iloc[np.argsort([order.get(k, 99) for k in key], kind="stable")]
    labels = [SCHEME_LABEL.get(k, k) for k in (df[column] if column else df.index)]
    df = df.drop(columns=[column]) if column else df
    df.index = labels
    return df


def integer_epochs(ax) -> None:
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


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
    import matplotlib.pyplot as plt
    stages = sorted(curves["stage"].unique())
    fig, axes = plt.subplots(1, 1 + len(stages), figsize=(WIDTH, 2.9))
    acc = curves.dropna(subset=["test_acc"]).groupby(["fold", "epoch"])["test_acc"].mean().unstack("fold") * 100
    for fold in acc.columns:
        axes[0].plot(acc.index, acc[fold], lw=1, label=f"fold {fold}")
    axes[0].set(xlabel="epoch", ylabel="test-fold accuracy (%)", title="after each epoch")
    axes[0].legend(fontsize=7, ncol=2)
    names = {1: "SupCon loss (stage 1)" if scheme == "supcon" else "training loss", 2: "cross-entropy (stage 2)"}
    for ax, stage in zip(axes[1:], stages):
        d = curves[curves.stage == stage].groupby("epoch")["train_loss"]
        mean, lo, hi = d.mean(), d.min(), d.max()
        ax.plot(mean.index, mean, color=SCHEME_COLOR[scheme], lw=1.2)
        ax.fill_between(mean.index, lo, hi, color=SCHEME_COLOR[scheme], alpha=0.2, lw=0)
        ax.set(xlabel="epoch", ylabel=names[stage], title="mean and range over runs")
    for ax in axes:
        integer_epochs(ax)
    return fig


def interval_bars(ax, labels: Sequence[str], means: Sequence[float], lows: Sequence[float], highs: Sequence[float],
                  colors: Sequence[str] | None = None, xlabel: str = "accuracy (%)"):
    """Horizontal bars with their 95 % intervals as error bars."""
    import textwrap
    labels = [textwrap.fill(str(label), 34) for label in labels]
    y = np.arange(len(labels))
    means = np.asarray(means, dtype=float)
    err = np.array([means - np.asarray(lows, dtype=float), np.asarray(highs, dtype=float) - means])
    ax.barh(y, means, xerr=np.nan_to_num(err), color=colors or "#4c72b0", capsize=3, alpha=0.85)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    lows = np.asarray(lows, dtype=float)
    lo = np.nanmin(lows) if np.isfinite(lows).any() else np.nan
    ax.set_xlim(max(0, np.nanmin([lo, means.min()]) - 5), 100)


def confusion(ax, matrix, names: Sequence[str], title: str):
    m = np.asarray(matrix, dtype=float)
    m = m / np.clip(m.sum(1, keepdims=True), 1, None)
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
    n = len(names)
    small = n > 12
    ax.set_xticks(range(n), [] if small else names, rotation=90, fontsize=7)
    ax.set_yticks(range(n), [] if small else names, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    ax.grid(False)
    return im


def class_legend(ax, names: Sequence[str], cmap) -> None:
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], marker="o", ls="", color=cmap(i), markersize=5, label=n) for i, n in enumerate(names)]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)


def class_colors(n: int):
    import matplotlib.pyplot as plt
    return plt.get_cmap("tab10" if n <= 10 else "tab20" if n <= 20 else "gist_ncar", max(n, 1))


def augmentation_explorer(cfg, waves, lengths, *, interactive: bool = True):
    """One training draw of the pipeline for other settings: sliders for the mask counts and widths,
    the scaling range and white noise (in Jupyter Lab with ipywidgets); without them (the static
    book), the preset's own settings."""
    import matplotlib.pyplot as plt
    import torch
    from dataclasses import replace

    from .augment import Pipeline

    cfg = cfg.resolved()
    a = cfg.augment

    def draw(freq_masks=a.freq_masks, freq_mask_width=a.freq_mask_width, time_masks=a.time_masks,
             time_mask_width=a.time_mask_width, scale_max=a.scale_max, noise_std=0.0, draw=1):
        aug = replace(a, freq_masks=freq_masks, freq_mask_width=freq_mask_width, time_masks=time_masks,
                      time_mask_width=time_mask_width, scale_max=max(1.0, scale_max))
        p = Pipeline(cfg.features, aug, cfg.data.sample_rate, cfg.data.clip_samples).train()
        x = p(waves, lengths, keys=torch.tensor([draw * 7919 + 11]), noise_std=noise_std,
              noise_generator=torch.Generator().manual_seed(draw))[0, 0]
        fig, ax = plt.subplots(figsize=(WIDTH, 2.6))
        spectrogram(ax, x, sample_rate=cfg.data.sample_rate, hop_length=cfg.features.hop_length,
                    top_db=cfg.features.top_db,
                    title=f"f = {freq_masks} (F = {freq_mask_width}), t = {time_masks} (T = {time_mask_width}), "
                          f"scale up to x{scale_max:g}, noise {noise_std:g}, draw {draw}")
        plt.show()

    if interactive:
        try:
            import ipywidgets as w
        except ImportError:
            interactive = False
    if not interactive:
        draw()
        return None
    mels, frames = cfg.features.n_mels, 1 + cfg.data.clip_samples // cfg.features.hop_length
    return w.interact(draw, freq_masks=w.IntSlider(a.freq_masks, 0, 4), freq_mask_width=w.IntSlider(a.freq_mask_width, 0, mels // 2),
                      time_masks=w.IntSlider(a.time_masks, 0, 4), time_mask_width=w.IntSlider(a.time_mask_width, 0, frames // 2),
                      scale_max=w.FloatSlider(a.scale_max, min=1.0, max=2.0, step=0.05),
                      noise_std=w.SelectionSlider(options=[0.0, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2], value=0.0),
                      draw=w.IntSlider(1, 1, 20))
