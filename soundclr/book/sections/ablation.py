"""The ``ablation`` notebook: Fig. 3 (transfer learning, channels, augmentation), Table I (the masking grid),
the mask fills, and the page's conclusion."""
from __future__ import annotations

import matplotlib.pyplot as plt

from ...analysis import tables
from .. import figures
from ...analysis.claims import own_claims
from ..conclusions import fill_reason, page_conclusion
from ..plan import ABLATION_LABELS, FILL_LABELS


INTERVAL_WORDS = ("Each bar's interval is the 95 % Wilson interval of its accuracy over its test clips: it stays "
                  "within 0-100 % and counts clip sampling only, not the spread between seeds or folds. Whether one "
                  "variant beats another is the ledger's paired test over the folds (the conclusion below).")


def skipped_text(skipped: dict[str, str]) -> str:
    """Markdown: the bars Fig. 3 leaves out (``{variant: why}``), grouped by reason: ``Not shown (why):
    *label*; *label*.``; empty when none is."""
    reasons: dict[str, list[str]] = {}
    for k, why in skipped.items():
        reasons.setdefault(why, []).append(ABLATION_LABELS.get(k, k))
    return " ".join(f"Not shown ({why}): " + "; ".join(f"*{label}*" for label in v) + "."
                    for why, v in reasons.items())


def figure_3(page) -> None:
    """Fig. 3: a bar per variant (mean final accuracy over the test folds, 95 % interval over the test
    clips), the bars left out and why, and the table (interval and mean ± sd)."""
    plan = page.plan
    f3 = tables.variant_table(page.frame(plan.ablation_runs()), list(plan.ablation))
    figures.interval_bars([ABLATION_LABELS.get(v, v) for v in f3.index], f3["mean"], f3["low"], f3["high"])
    plt.show()
    page.show(skipped_text(plan.ablation_skipped), INTERVAL_WORDS,
              figures.tidy(tables.variant_display(f3, ABLATION_LABELS)))


def table_1(page) -> None:
    """Table I: the masking grid (mean ± sd over the mask folds), under a line saying what it holds."""
    plan = page.plan
    df = page.frame(plan.masking_runs())
    page.show(f"Accuracy (%) of the cross-entropy baseline, final epoch, mean ± standard deviation over test folds "
              f"{', '.join(map(str, plan.mask_folds))}: rows are the number of frequency masks $f$, columns the number "
              "of time masks $t$, for each panel of maximum widths $F$ (mel bands) and $T$ (frames).",
              figures.tidy(tables.masking_table(df)))


def fill_table(page):
    """The mask-fill runs' ``tables.variant_table`` (a row per fill: ``fill-zero``, ...), once per page."""
    plan = page.plan
    return page.cached("ablation.fill", lambda: tables.variant_table(page.frame(plan.fill_runs()),
                                                                     [f"fill-{f}" for f in plan.fills]))


def fills(page) -> None:
    """What the masks are filled with: the runs' settings in words, and the table of the fills."""
    fill = fill_table(page)
    page.show(page.plan.fill_settings_text(), INTERVAL_WORDS,
              figures.tidy(tables.variant_display(fill, {f"fill-{f}": words for f, words in FILL_LABELS.items()})))


def conclusion(page) -> None:
    """C4a, C4b, C5a, C5b and C10; C4b's reason from the fill table when the paper's fill is the cause."""
    page.show(page_conclusion(page.ledger, ["C4a", "C4b", "C5a", "C5b", "C10", *own_claims("ablation")], page.plan,
                              reasons={"C4b": fill_reason(fill_table(page), page.plan)}))
