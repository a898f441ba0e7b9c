"""The ``claims`` notebook: the scope, the ledger, the summary, fairness, the paper's protocol, sensitivity to
unconverged runs, convergence, the cost of a decisive test, and what the build leaves out."""
from __future__ import annotations

import pandas as pd

from ...analysis import tables
from ...analysis.convergence import main_grid_convergence
from .. import conclusions, figures, prose
from ..decisive import decisive_cost


def convergence(page) -> pd.DataFrame:
    """Every main-grid run with its convergence test (``main_grid_convergence`` rows); once per page."""
    return page.cached("claims.convergence", lambda: main_grid_convergence(page.plan))


def scope(page) -> None:
    """What this build ran, what it can test and what it cannot."""
    page.show(conclusions.scope_text(page.plan))


def ledger(page) -> None:
    """The ledger (one row per claim, as HTML), after training any run of the plan the store lacks
    (normally none: ``soundclr reproduce`` trained them)."""
    from IPython.display import HTML  # IPython: the book extra's (a notebook's kernel)
    page.train_missing(page.plan.all_runs())
    page.show(HTML(prose.ledger_html(page.ledger, page.dataset)))


def summary(page) -> None:
    page.show(conclusions.summary_text(page.ledger, page.plan))


def fairness(page) -> None:
    page.show(conclusions.fairness_text(page.ledger, page.plan))


def protocol(page) -> None:
    """Each claim under the final epoch, the best epoch on the test fold (and on a validation fold)."""
    page.show(figures.tidy(prose.protocol_table(page.ledger)), prose.protocol_text(page.ledger))


def sensitivity(page) -> None:
    """Every run against converged runs only, and the unconverged main-grid runs per scheme."""
    page.show(figures.tidy(prose.sensitivity_table(page.ledger)),
              "**Main-grid runs that did not converge, per scheme**",
              figures.tidy(tables.scheme_index(prose.nonconvergence_table(convergence(page)))))


def convergence_table(conv: pd.DataFrame) -> pd.DataFrame:
    """Per scheme (rows, display names): runs, converged runs, the largest loss move over the last tenth
    of training (%) and the largest spread over the last 5 evaluations (points)."""
    table = conv.groupby("scheme").agg(runs=("converged", "size"), converged=("converged", "sum"),
                                       loss_change=("loss_change", "max"), spread=("spread", "max"))
    table["loss_change"] = (100 * table["loss_change"]).map("{:.1f} %".format)
    table["spread"] = (100 * table["spread"]).map("{:.1f} points".format)
    table.columns = ["runs", "converged", "loss move, last tenth (max)", "spread, last 5 (max)"]
    return figures.tidy(tables.scheme_index(table))


def converged(page) -> None:
    """The convergence of the main grid, in words and per scheme."""
    conv = convergence(page)
    page.show(conclusions.convergence_summary(conv), convergence_table(conv))


def decisive(page) -> None:
    """The seeds and GPU-hours a decisive test of the headline claims would need."""
    page.show(figures.tidy(decisive_cost(page.plan).set_index(["claim", "dataset"])))


def left_out(page) -> None:
    page.show(conclusions.reductions_text(page.plan))
