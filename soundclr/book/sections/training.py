"""The ``training`` notebook (one page per scheme): the schedule, the learning curves, the accuracy per fold,
convergence, and the conclusion."""
from __future__ import annotations

import matplotlib.pyplot as plt

from ...analysis import tables
from ...analysis.convergence import main_grid_convergence
from ...schemes import get as scheme_of
from ...runs.store import load_metrics
from .. import figures
from ..conclusions import convergence_summary, page_conclusion



def schedule_text(plan, scheme: str) -> str:
    """Markdown: the scheme, its epochs per run (each stage's for the two-stage scheme) and what it minimises."""
    cfg = plan.config.override(scheme=scheme)
    stages = cfg.stages()
    epochs = [f"{st['epochs']} epoch{'s' if st['epochs'] != 1 else ''}" for st in stages]
    length = epochs[0] if len(stages) == 1 else f"stage 1 {epochs[0]}, stage 2 {epochs[1]}"
    s = scheme_of(scheme)          # what it minimises: this page's scheme only (one notebook, a page per scheme)
    what = s.minimises.format(a=cfg.optim.alpha, b=1 - cfg.optim.alpha) or f"the loss of {s.source or 'its plugin'}"
    return f"**Scheme**: {s.label}, {length} per run. It minimises {what}."


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
    """The scheme's claims (its record's ``claims``), once the whole main grid is finished."""
    plan = page.plan
    page.show(page_conclusion(page.ledger_if_finished(plan.main_runs()), list(scheme_of(page["scheme"]).claims), plan))
