"""The ``robustness`` notebook: Fig. 5 (accuracy under white noise per scheme) with its table, and the conclusion."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from ...analysis import tables
from ...config import SCHEME_LABEL, SCHEMES
from .. import figures
from ..conclusions import page_conclusion


def noise(page) -> pd.DataFrame:
    """Every main-grid run at every noise level of the plan (``tables.noise_frame``: scheme, fold, seed,
    noise_std, accuracy in %), training the missing runs first; once per page."""
    return page.cached("robustness.noise", lambda: tables.noise_frame(
        page.frame(page.plan.main_runs()), page.plan.noise_stds, bank=page.bank, device=page.device))


def summary(noise: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd of the accuracy over the runs, per scheme and noise level: columns scheme, noise_std,
    mean, std."""
    return noise.groupby(["scheme", "noise_std"])["accuracy"].agg(["mean", "std"]).reset_index()


def level_label(std: float) -> str:
    """``0 (clean)``, ``1e-4``, ``5e-4``, ...: a noise level for an axis."""
    return "0 (clean)" if std == 0 else f"{std:.0e}".replace("e-0", "e-")


def noise_figure(noise: pd.DataFrame):
    """Fig. 5 from ``noise`` (:func:`noise` rows): accuracy against the noise level, a line per scheme,
    mean ± sd over the runs. Returns the figure."""
    s = summary(noise)
    levels = sorted(noise.noise_std.unique())
    fig, ax = plt.subplots(figsize=(figures.WIDTH, 3.0))
    for scheme in [k for k in SCHEMES if k in set(s.scheme)]:
        d = s[s.scheme == scheme].set_index("noise_std").loc[levels]
        ax.errorbar(range(len(levels)), d["mean"], yerr=d["std"], marker="o", capsize=3, label=SCHEME_LABEL[scheme],
                    color=figures.SCHEME_COLOR[scheme])
    ax.set_xticks(range(len(levels)), [level_label(v) for v in levels])
    ax.set(xlabel="standard deviation of the added white noise", ylabel="accuracy (%)")
    ax.legend()
    return fig


def noise_table(noise: pd.DataFrame) -> pd.DataFrame:
    """Fig. 5's numbers: a row per scheme, a column per level (``clean``, ``noise 0.0001``, ...),
    cells "mean ± sd" over the runs."""
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
    page.show("Mean ± standard deviation over the runs (folds x seeds) of the main grid.", noise_table(n))


def conclusion(page) -> None:
    """C6a and C6b."""
    page.show(page_conclusion(page.ledger, ["C6a", "C6b"], page.plan))
