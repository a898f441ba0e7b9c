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


def schedule_text(plan, scheme: str) -> str:
    """Markdown: the scheme and its epochs per run (each stage's for the two-stage scheme)."""
    stages = plan.config.override(scheme=scheme).stages()
    length = (f"{stages[0]['epochs']} epochs" if len(stages) == 1 else
              f"stage 1 {stages[0]['epochs']} epochs, stage 2 {stages[1]['epochs']} epochs")
    return f"**Scheme**: {SCHEME_LABEL[scheme]}, {length} per run."


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
