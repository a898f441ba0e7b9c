"""The ``representations`` notebook: UMAPs of the representation h and the projection z of one run per scheme,
their silhouette scores, and the conclusion."""
from __future__ import annotations

import math
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ...schemes import get as scheme_of
from ...schemes import in_order, label_of
from ...files import read_json
from ...runs.inference import embeddings
from .. import figures
from ..conclusions import silhouette_conclusion

SPACES = (("representation", "h"), ("projection", "z"))


def untrained(key) -> bool:
    """Whether the panel ``(scheme, space)`` is a head no loss of the scheme trains (cross-entropy's projection)."""
    return key[1] == "projection" and not scheme_of(key[0]).trains_projection


def chosen_runs(page) -> list:
    """One run per scheme: the first test fold and the first seed of the main grid, trained first where missing."""
    plan = page.plan
    runs = plan.main_runs()
    page.train_missing(runs)
    return [r for r in runs if r.config.run.test_fold == plan.folds[0] and r.config.run.seed == plan.seeds[0]]


def silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """The cosine silhouette score of ``x (clips, dims)`` under ``labels (clips,)``; NaN where it is not
    defined (fewer than 2 classes, or as many classes as clips: a cut-down fold with one clip per class)."""
    from sklearn.metrics import silhouette_score  # the book extra's, and slow to import
    return float(silhouette_score(x, labels, metric="cosine")) if 2 <= len(set(labels)) < len(labels) else math.nan


def umap_2d(x: np.ndarray) -> np.ndarray:
    """A seeded 2-D UMAP ``(clips, 2)`` of ``x (clips, dims)`` (cosine metric; min_dist 0.5 spreads the
    clips so that no clip hides another)."""
    import umap  # the book extra's, and slow to import (numba)
    return umap.UMAP(n_neighbors=15, min_dist=0.5, metric="cosine", random_state=0).fit_transform(x)


def panels(page) -> dict:
    """Per (scheme, space): ``{"xy": (clips, 2) UMAP, "labels": (clips,), "score": silhouette}``, with
    ``"names"``: the class names; computed once per page."""
    def compute():
        out: dict = {}
        for run in chosen_runs(page):
            e = embeddings(run.directory)
            out["names"] = read_json(run.directory / "summary.json")["class_names"]
            labels = e["labels"].numpy()
            for space, _ in SPACES:
                x = e[space].numpy()
                out[(run.config.run.scheme, space)] = {"xy": umap_2d(x), "labels": labels,
                                                       "score": silhouette(x, labels)}
        return out
    return page.cached("representations.panels", compute)


def scores(page) -> dict:
    """The silhouette scores ``{(scheme, space): score}``."""
    return {k: v["score"] for k, v in panels(page).items() if k != "names"}


def umap_figure(p: dict):
    """The UMAP grid from :func:`panels`: rows h and z, a column per scheme, the untrained projection
    faded; the classes' legend at the right (or under the figure). Returns the figure."""
    schemes = in_order(k[0] for k in p if k != "names" and k[1] == "representation")
    fig, axes = plt.subplots(2, len(schemes), figsize=(figures.WIDTH, 5.0), squeeze=False)
    cmap = figures.class_colors(len(p["names"]))
    many = len(schemes) > 3            # narrower columns: titles on two lines, the classes' legend under the figure
    name = (lambda s: textwrap.fill(label_of(s), 14)) if many else label_of
    for col, scheme in enumerate(schemes):
        for row, (space, symbol) in enumerate(SPACES):
            d, ax = p[(scheme, space)], axes[row, col]
            faded = untrained((scheme, space))
            figures.class_scatter(ax, d["xy"], d["labels"], cmap, untrained=faded)
            if faded:
                ax.set_title(f"{symbol}: {name(scheme)}", color="#555555")
                ax.set_xlabel(f"untrained (not ranked)\nsilhouette {d['score']:.2f}" if many else
                              f"untrained: a random map of $h$\nsilhouette {d['score']:.2f} (not ranked)", color="#555555")
            else:
                ax.set_title(f"{symbol}: {name(scheme)}")
                ax.set_xlabel(f"silhouette {d['score']:.2f}")
    figures.class_legend(axes[0, -1], p["names"], cmap, below=many)
    return fig


def umaps(page) -> None:
    """The UMAP grid and its caption."""
    umap_figure(panels(page))
    plt.show()
    plan = page.plan
    mixed = mixed_classes(panels(page))
    page.show(f"UMAPs of test fold {plan.folds[0]} (seed {plan.seeds[0]}); top: representation $h$, bottom: "
              "projection $z$. Each class has its colour and its shape (the legend); the clips are "
              "drawn in a random order, so that the classes drawn last do not cover the others. "
              + (f"Classes whose clips lie mostly among another class's in at least one trained panel (most of their "
                 f"5 nearest neighbours there belong to other classes): {', '.join(mixed)}. UMAP keeps neighbours, not "
                 "distances, so a tight cluster far from the others says that its clips are alike, not how far apart "
                 "the classes are. " if mixed else
                 "In every trained panel each class's clips lie mostly among their own class. ")
              + "The grey panel is the cross-entropy scheme's projection: no loss trains its head, so it is an untrained "
              "random map of $h$, shown for completeness and left out of the rankings below.")


def mixed_classes(p: dict, k: int = 5) -> list[str]:
    """The classes that, in some trained panel of :func:`panels`, have more than half of their clips' ``k``
    nearest 2-D neighbours in other classes (in the order of the class names)."""
    out = set()
    for key, d in p.items():
        if key == "names" or untrained(key):
            continue
        xy, labels = np.asarray(d["xy"]), np.asarray(d["labels"])
        dist = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)
        np.fill_diagonal(dist, np.inf)
        near = np.argsort(dist, axis=1)[:, :k]
        foreign = (labels[near] != labels[:, None]).mean(1)
        for c in np.unique(labels):
            if foreign[labels == c].mean() > 0.5:
                out.add(int(c))
    return [p["names"][c] for c in sorted(out)]


def silhouette_table(scores: dict) -> pd.DataFrame:
    """The scores ``{(scheme, space): score}`` as the figure lays them out: rows h and z, a column per
    scheme, two decimals; the untrained projection marked as not ranked."""
    sil = pd.Series(scores).unstack(0)
    sil = sil[in_order(sil.columns)].loc[[space for space, _ in SPACES]]
    sil.index = [f"{space} {symbol}" for space, symbol in SPACES]
    faded = [label_of(s) for s in sil.columns if untrained((s, "projection"))]
    sil.columns = [label_of(s) for s in sil.columns]
    sil = figures.tidy(sil)
    for column in faded:
        sil.loc["projection z", column] += " (untrained: not ranked)"
    return sil.T if len(sil.columns) > 3 else sil      # more schemes than fit side by side: a row each


def silhouettes(page) -> None:
    page.show(silhouette_table(scores(page)))


def conclusion(page) -> None:
    page.show(silhouette_conclusion(scores(page)))
