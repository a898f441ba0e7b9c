"""The ``training`` notebook (one page per scheme): the schedule, the learning curves, the accuracy per fold,
convergence, and the conclusion."""
from __future__ import annotations

import matplotlib.pyplot as plt

from ...analysis import tables
from ...analysis.convergence import main_grid_convergence
from ...config import SCHEME_LABEL
from ...runs.store import load_metrics
from .. import figures
from ..conclusions import convergence_summary, page_conclusion

# The claims each scheme's training notebook concludes on.
CLAIMS = {"ce": ["C1", "C8c"], "supcon": ["C2", "C6a", "C8a", "C8b"], "hybrid": ["C1", "C2", "C8a", "C8b", "C8c"]}


# What each scheme minimises, and what its curves show (this page's scheme only: one notebook, three pages).
WHAT = {"ce": "the cross-entropy of a linear classifier on the representation h (the paper's baseline; its projection "
              "head is built but no loss trains it)",
        "supcon": "in stage 1 the supervised contrastive loss on the projection z (no classifier yet, so stage 1 has no "
                  "accuracy); in stage 2 the encoder is frozen and a linear classifier on h minimises the "
                  "cross-entropy. The two stages' losses are different functions, each drawn on its own axis",
        "hybrid": "{a:g} x the supervised contrastive loss on z + {b:g} x the cross-entropy of the classifier on h "
                  "(alpha = {a:g}), in one stage: SoundCLR"}


def schedule_text(plan, scheme: str) -> str:
    """Markdown: the scheme, its epochs per run (each stage's for the two-stage scheme) and what it minimises."""
    cfg = plan.config.override(scheme=scheme)
    stages = cfg.stages()
    epochs = [f"{st['epochs']} epoch{'s' if st['epochs'] != 1 else ''}" for st in stages]
    length = epochs[0] if len(stages) == 1 else f"stage 1 {epochs[0]}, stage 2 {epochs[1]}"
    what = WHAT[scheme].format(a=cfg.optim.alpha, b=1 - cfg.optim.alpha)
    return f"**Scheme**: {SCHEME_LABEL[scheme]}, {length} per run. It minimises {what}."


def runs(page):
    """The page's scheme on every test fold and seed of the main grid (``soundclr.runs.store.frame``
    rows), trained first where missing; once per page."""
    return page.cached("training.runs", lambda: page.frame(page.plan.main_runs(schemes=[page["scheme"]])))


def train(page) -> None:
    """The scheme and its schedule, then training whatever of the scheme's runs is missing."""
    page.show(schedule_text(page.plan, page["scheme"]))
    runs(page)


def learning_curves(page) -> None:
    """The test-fold accuracy after each epoch per fold, and the training loss per stage."""
    figures.learning_curves(load_metrics(runs(page)), page["scheme"])
    plt.show()


def fold_table(page) -> None:
    """The final epoch's and the best epoch's accuracy per fold, mean ± sd over seeds."""
    page.show(figures.tidy(tables.fold_table(runs(page))))


def convergence(page) -> None:
    """Whether the scheme's main-grid runs converged, in words."""
    page.show(convergence_summary(main_grid_convergence(page.plan, [page["scheme"]])))


def conclusion(page) -> None:
    """The scheme's claims (:data:`CLAIMS`), once the whole main grid is finished."""
    plan = page.plan
    page.show(page_conclusion(page.ledger_if_finished(plan.main_runs()), CLAIMS[page["scheme"]], plan))
