"""The ``results`` notebook: Tables II, III and IV, Fig. 4, the confusion matrices, and the conclusion."""
from __future__ import annotations

import matplotlib.pyplot as plt

from ...analysis import tables
from .. import figures
from ...analysis.claims import own_claims
from ..conclusions import page_conclusion


def main(page):
    """The main grid's summaries (``soundclr.runs.store.frame`` rows), training what is missing; once per page."""
    return page.cached("main", lambda: page.frame(page.plan.main_runs()))


def prepare(page) -> None:
    """Train what the page reads and is not in the store yet (normally nothing: the training pages and
    ``soundclr reproduce`` trained it): the main grid and the alpha sweep."""
    main(page)
    page.train_missing(page.plan.alpha_runs())


def table_2(page) -> None:
    """Table II: the alpha sweep, mean ± sd over the test folds, beside the paper's."""
    page.show(figures.tidy(tables.alpha_table(page.frame(page.plan.alpha_runs()), page.dataset)))


def table_3(page) -> None:
    """Table III twice: the final epoch (our headline) and the paper's protocol (the best epoch on the test fold)."""
    df = main(page)
    page.show("**Table III** (our headline: the final epoch)",
              figures.tidy(tables.scheme_table(df, "final_acc", page.dataset)),
              "**Table III, the paper's protocol** (the best epoch, selected on the test fold)",
              figures.tidy(tables.scheme_table(df, "best_test_acc", page.dataset)))


def table_4(page) -> None:
    """Table IV beside the literature, and the ensembles of every scheme."""
    t4, ens = tables.table_four(main(page), page.plan)
    if isinstance(t4, tuple):
        published, ours = t4
        page.show("**Table IV as published** (ESC-50, the paper's Table IV)", figures.tidy(published),
                  f"**This build's rows** ({page.dataset}: another dataset and a smaller network, so no row here "
                  "is comparable with a published one)", figures.tidy(ours))
    else:
        page.show(f"**Table IV** ({page.dataset})", figures.tidy(t4))
    page.show("**Ensembles of every scheme** (final epoch)", figures.tidy(ens))


def figure_4(page) -> None:
    """Fig. 4 (accuracy per fold and scheme) and its numbers, a row per fold."""
    df = main(page)
    figures.fold_bars(df)
    plt.show()
    page.show(figures.tidy(tables.scheme_fold_table(df).T),   # a row per fold: fits the column
              "Fig. 4's numbers: mean ± standard deviation over seeds, per scheme and fold (final epoch).")


def confusions(page, k: int = 5) -> None:
    """Each scheme's confusion matrix (summed over folds and seeds, rows normalised), and each
    scheme's ``k`` most confused pairs."""
    df = main(page)
    figures.confusion_panels(df)
    plt.show()
    page.show("**The most confused pairs** (true → predicted, share of the true class's clips)",
              figures.tidy(tables.confused_pairs_table(df, k=k)))


def conclusion(page) -> None:
    """C1, C2, C3, C7a, C7b, C9 and C11."""
    page.show(page_conclusion(page.ledger, ["C1", "C2", "C3", "C7a", "C7b", "C9", "C11", *own_claims("results")], page.plan))
