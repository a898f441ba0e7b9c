"""The ``claims`` notebook: the scope, the ledger, the summary, fairness, the paper's protocol, sensitivity to
unconverged runs, convergence, the cost of a decisive test, and what the build leaves out."""
from __future__ import annotations

import pandas as pd

from ...analysis import tables
from ...analysis.convergence import main_grid_convergence
from .. import conclusions, figures, prose
from ..page import show_lines
from ..decisive import decisive_cost, decisive_designs, decisive_meaning, decisive_rows, decisive_terms, table3_check


def convergence(page) -> pd.DataFrame:
    """Every main-grid run with its convergence test (``main_grid_convergence`` rows); once per page."""
    return page.cached("claims.convergence", lambda: main_grid_convergence(page.plan))


def scope(page) -> None:
    """What this build ran, what it can test and what it cannot (first, within the first screen), then the
    Settings, Provenance and Runs lines."""
    page.show(conclusions.scope_text(page.plan))
    show_lines(page)


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
    """The power, seeds and GPU-hours of a decisive test of the headline claims; what it means for the paper; the
    variance terms behind it and the cross-check of the seed term against Table III."""
    rows = page.cached("claims.decisive", lambda: decisive_rows(page.plan))
    if not rows:
        page.show("This build's main grid cannot fit the noise model (it needs two or more folds and two seeds per "
                  "fold of each scheme), so no decisive test is planned here; `soundclr plan --results DIR --dataset "
                  "NAME` plans one from any results folder that has them.")
        return
    page.show(figures.tidy(decisive_cost(page.plan, rows=rows).set_index(["claim", "dataset", "effect"])),
              "**The designs and their cost** (the same rows; GPU-hours on one H200; ESC-50 and ESC-10: five folds of 400 "
              "and 80 clips, UrbanSound8K: ten of about 873):",
              figures.tidy(decisive_designs(rows).set_index(["claim", "dataset", "effect"])), decisive_meaning(rows),
              terms_text(decisive_terms(rows)), table3_check(rows))


def terms_text(terms: pd.DataFrame) -> str:
    """Markdown: the sizes of the variance terms behind the table, on ESC-50."""
    if terms.empty:
        return ""
    esc = terms[terms.dataset == "ESC-50"]
    parts = [f"{r.claim}: test clips {r.clip:.2f}, one run of each side {r.seed:.2f}, training sets {r.train:.2f} "
             f"fold to fold and {r.shared:.2f} shared by the folds" for r in esc.itertuples()]
    return ("**The variance terms** of one ESC-50 fold's difference (points squared, `soundclr.analysis.noise`): "
            + "; ".join(parts) + ". Seeds average out over the runs of a fold; the clip term over the folds; the "
            "training-set term's shared part never averages out over the official folds.")


def left_out(page) -> None:
    page.show(conclusions.reductions_text(page.plan))
