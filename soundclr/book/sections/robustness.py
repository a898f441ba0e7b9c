"""The ``robustness`` notebook: Fig. 5 (accuracy under white noise per scheme) with its table, and the conclusion."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import torch

from ...analysis import tables
from ...audio.io import to_float
from ...schemes import color_of, in_order, label_of
from .. import figures
from ...analysis.claims import own_claims
from ..conclusions import page_conclusion


def noise(page) -> pd.DataFrame:
    """Every main-grid run at every noise level of the plan (``tables.noise_frame``: scheme, fold, seed,
    noise_std, accuracy in %), training the missing runs first; once per page."""
    return page.cached("robustness.noise", lambda: tables.noise_frame(
        page.frame(page.plan.main_runs()), page.plan.noise_stds, bank=page.bank, device=page.device))


def summary(noise: pd.DataFrame) -> pd.DataFrame:
    """Per scheme and noise level, as Table III: each seed's accuracy averaged over the folds, then the mean
    and sd over the seeds (so the clean column is Table III's). Columns scheme, noise_std, mean, std."""
    per_seed = noise.groupby(["scheme", "noise_std", "seed"])["accuracy"].mean().reset_index()
    return per_seed.groupby(["scheme", "noise_std"])["accuracy"].agg(["mean", "std"]).reset_index()


def snr_db(bank, stds) -> dict[float, float]:
    """Per noise sd, the median over the dataset's clips of the signal-to-noise ratio in dB,
    20 log10(RMS of the clip / sd), with the clip's RMS over its own samples in [-1, 1]."""
    parts = []
    for chunk in torch.arange(len(bank)).split(256):     # a few hundred clips at a time: UrbanSound8K in float is 6 GB
        waves, lengths = bank.batch(chunk)
        x = to_float(waves)
        mask = torch.arange(x.shape[1])[None, :] < lengths[:, None]
        parts.append(((x * mask).pow(2).sum(1) / lengths.clamp(min=1)).sqrt())
    rms = torch.cat(parts)
    rms = rms[rms > 0]
    return {float(sd): float(20 * torch.log10(rms / sd).median()) for sd in stds if sd > 0}


def level_label(std: float) -> str:
    """``0 (clean)``, ``1e-4``, ``5e-4``, ...: a noise level for an axis."""
    return "0 (clean)" if std == 0 else f"{std:.0e}".replace("e-0", "e-")


def noise_figure(noise: pd.DataFrame):
    """Fig. 5 from ``noise`` (:func:`noise` rows): accuracy against the noise level, a line per scheme,
    mean ± sd over the seeds of the fold-averaged accuracy (as Table III). Returns the figure."""
    s = summary(noise)
    levels = sorted(noise.noise_std.unique())
    fig, ax = plt.subplots(figsize=(figures.WIDTH, 3.0))
    shown = in_order(s.scheme)
    for i, scheme in enumerate(shown):
        d = s[s.scheme == scheme].set_index("noise_std").loc[levels]
        dodge = 0.08 * (i - (len(shown) - 1) / 2)       # side by side at each level, so no error bar hides another
        ax.errorbar([x + dodge for x in range(len(levels))], d["mean"], yerr=d["std"], marker="o", capsize=3,
                    label=label_of(scheme), color=color_of(scheme))
    ax.set_xticks(range(len(levels)), [level_label(v) for v in levels])
    ax.set(xlabel="standard deviation of the added white noise", ylabel="accuracy (%)")
    ax.legend()
    return fig


def noise_table(noise: pd.DataFrame) -> pd.DataFrame:
    """Fig. 5's numbers: a row per scheme, a column per level (``clean``, ``noise 0.0001``, ...),
    cells "mean ± sd" over the seeds (of the fold-averaged accuracy)."""
    s = summary(noise)
    t = s.assign(cell=[tables.pm(m, sd) for m, sd in zip(s["mean"], s["std"])]).pivot(
        index="scheme", columns="noise_std", values="cell")
    t.columns = ["clean" if v == 0 else f"noise {v:g}" for v in t.columns]
    return figures.tidy(tables.scheme_index(t))


def figure_5(page) -> None:
    """Fig. 5, a line on what it averages, and its table."""
    n = noise(page)
    noise_figure(n)
    plt.show()
    snr = snr_db(page.bank, page.plan.noise_stds)
    page.show("Mean ± standard deviation over the seeds of the accuracy averaged over the folds, as in Table III (so the "
              "clean column is Table III's). The signal-to-noise ratio of each level, the median over this dataset's "
              "clips of 20 log10(clip RMS / noise sd): " + ", ".join(f"{level_label(sd)}: {db:.0f} dB" for sd, db in snr.items())
              + ".", noise_table(n))


def conclusion(page) -> None:
    """C6a and C6b."""
    page.show(page_conclusion(page.ledger, ["C6a", "C6b", *own_claims("robustness")], page.plan))
