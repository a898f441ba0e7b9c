"""The ledger in words and HTML for the book's pages: intervals, power, the ledger table, the
protocol and sensitivity tables.
"""
from __future__ import annotations

import html
import math
import re

import pandas as pd

from ..analysis.claims import BY_DESIGN, PROTOCOL_LABEL
from ..datasets import title_of

# -- words for the pages -------------------------------------------------------------------------


def number_text(x: float, unit: str = "points") -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:+.0f}" if unit == "seconds" else f"{x:+.2f}"


def is_number(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def level_label(level: float) -> str:
    """``95 %``, ``99.5 %``: an interval's level as its label says it."""
    return f"{100 * level:.2f}".rstrip("0").rstrip(".") + " %"


def interval_text(row, *, plain: bool = True) -> str:
    """``+0.88 points [-1.90, +3.66] (95 %)`` (the corrected interval, labelled with its level), the
    uncorrected fold interval at the same level, the folds."""
    r, unit = row, row["unit"]
    if r["verdict"] == "not testable":
        return "not testable"
    if not (math.isfinite(r["low_nb"]) and math.isfinite(r["high_nb"])):
        return f"{number_text(r['effect'], unit)} {unit} (n = {r['n']}: no interval)"
    level = r.get("level", 0.95)
    level = 0.95 if not is_number(level) else level
    n = f"{r['n']} folds" if r["design"] == "folds" else "clips per fold"
    each = " each, simultaneous" if r["design"] != "folds" else ""
    text = (f"{number_text(r['effect'], unit)} {unit} [{number_text(r['low_nb'], unit)}, {number_text(r['high_nb'], unit)}] "
            f"({level_label(level)}{each})")
    if plain and r["design"] == "folds":
        text += f"; uncorrected [{number_text(r['low'], unit)}, {number_text(r['high'], unit)}] ({level_label(level)})"
    return text + f", {n}"


NOT_DETECTABLE = 100.0      # points: an effect this design would need beyond it is "not detectable"


def _band_text(lo, hi, fmt) -> str:
    if not (is_number(lo) and is_number(hi)) or not (math.isfinite(lo)):
        return ""
    if fmt(lo) == fmt(hi):
        return f"; every refit of the band gave {fmt(lo)}"
    return f"; band {fmt(lo)} to {fmt(hi) if math.isfinite(hi) else 'not detectable'}"


def power_text(row) -> str:
    """The simulated figures of a row (:mod:`soundclr.analysis.power`): the effect the rule detects with 80 % power,
    its size (the rate of a verdict at zero effect) and its power at the paper's effect, each with its Monte Carlo
    error and the band from the noise components' uncertainty. An effect beyond 100 points reads "not detectable
    with N folds"."""
    if row["verdict"] == "not testable":
        return "n/a"
    unit = row["unit"]

    def size(x):
        return "n/a" if not is_number(x) or not math.isfinite(x) else f"{abs(x):.0f}" if unit == "seconds" else f"{abs(x):.2f}"

    if row.get("design") == "clips per fold":       # C9: non-inferiority
        if not is_number(row.get("power")):
            return "n/a"
        return (f"non-inferiority power at equal schemes (simulated): {100 * row['power']:.0f} % "
                f"± {100 * row.get('power_mc', 0.0):.0f}")
    det = row.get("detectable", math.nan)
    if not is_number(det):
        return "n/a"
    if not math.isfinite(det) or abs(det) > NOT_DETECTABLE:
        text = f"not detectable with {int(row['n'])} folds (no effect up to {NOT_DETECTABLE:.0f} {unit} reaches 80 % power)"
    else:
        text = f"detects {size(det)} {unit} with 80 % power" + _band_text(row.get("detectable_low"),
                                                                        row.get("detectable_high"), size)
    if is_number(row.get("size")):
        text += f"; size {100 * row['size']:.1f} %"
    if is_number(row.get("power")) and is_number(row["paper"]):
        pct = lambda x: f"{100 * x:.0f} %"          # noqa: E731
        text += (f"; power at the paper's {row['paper']:.2f}: {pct(row['power'])} ± {100 * row.get('power_mc', 0.0):.0f}"
                 + _band_text(row.get("power_low"), row.get("power_high"), pct))
    return text + " (simulated)"


def tests_text(row) -> str:
    """The p values beside the verdict (corrected t, and the exact sign-flip test where there is one) and the
    probability of improvement with the folds won: what a reader needs to weigh a verdict on five folds."""
    parts = []
    if is_number(row.get("p")):
        parts.append(f"p = {row['p']:.3f} (corrected t)")
    if is_number(row.get("p_signflip")):
        parts.append(f"{row['p_signflip']:.3f} (exact sign-flip; smallest possible {2 / 2 ** int(row['n']):.3f})")
    if is_number(row.get("prob_improvement")):
        lo, hi = row.get("prob_low"), row.get("prob_high")
        ci = ("" if not (is_number(lo) and is_number(hi)) else f" (every resample: {lo:.2f})" if f"{lo:.2f}" == f"{hi:.2f}"
              else f" [{lo:.2f}, {hi:.2f}]")
        parts.append(f"P(improvement) {row['prob_improvement']:.2f}{ci}, ahead on {int(row['folds_won'])} of "
                     f"{int(row['folds'])} folds")
    return "; ".join(parts)


def _paper_cell(r) -> str:
    p = r["paper"]
    if not is_number(p):
        return r["paper_source"]
    where = "" if r["paper_dataset"] == r.get("dataset") else f", {title_of(r['paper_dataset'])}"
    return f"{number_text(p, r['unit'])} {r['unit']} ({r['paper_source']}{where})"


SHORT_WORDS = {   # the verdict's words in the ledger table (the page's "How to read" says the rest)
    "inconclusive: cannot tell at this size (the interval holds zero; low power at the paper's effect)":
        "cannot tell at this size",
    "inconclusive: the interval holds zero": "holds zero",
    "inconclusive: no interval (fewer than two folds)": "no interval",
}


VERDICT_COLOR = {"supported": "#1a7f37", "contradicted": "#b42318", "inconclusive": "#7a5b00", BY_DESIGN: "#2f5f8f",
                 "not testable": "#555555"}


PAGE_TITLE = {"results": "Results", "ablation": "Ablation", "robustness": "Robustness", "training-hybrid": "Training: hybrid"}


def _code(text: str) -> str:
    """Markdown's `inline code` as HTML, for text that goes into an HTML table."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def ledger_html(led: pd.DataFrame, dataset: str | None = None) -> str:
    """The ledger as an HTML table (the Claims notebook shows it): claim, the paper's effect, this build's effect
    with its corrected and uncorrected intervals, what the design can detect, the verdict, and a link
    to the page holding the evidence."""
    rows = []
    for _, r in led.iterrows():
        r = {**r, "dataset": dataset}
        testable = r["verdict"] != "not testable"
        mine = html.escape(interval_text(r)) if testable else _code(html.escape(r["note"]))
        if testable and r["note"]:
            mine += f"<br><small>{_code(html.escape(r['note']))}.</small>"
        if testable and r["verdict"] != BY_DESIGN:
            mine += f"<br><small><i>{html.escape(power_text(r))}</i></small>"
            tests = tests_text(r)
            mine += f"<br><small>{html.escape(tests)}</small>" if tests else ""
            if r.get("paper_position"):
                mine += f"<br><small>{html.escape(r['paper_position'])} (a description, not a test)</small>"
        rest = ("not a test: true by construction" if r["verdict"] == BY_DESIGN else
                SHORT_WORDS.get(r["verdict_text"].split("; the paper's effect")[0], "")
                + ("; the paper's effect lies outside the interval" if "; the paper's effect lies" in r["verdict_text"]
                   else ""))
        rows.append(
            f"<tr {_row_data(r)}>"
            f"<td><b>{r['id']}</b> {html.escape(r['claim'])}<br><small>{html.escape(r['measure'])}</small></td>"
            f"<td>{html.escape(_paper_cell(r))}</td>"
            f"<td>{mine}</td>"
            f"<td><b style=\"color:{VERDICT_COLOR[r['verdict']]}\">{r['verdict']}</b>"
            + (f"<br><small>{html.escape(rest)}</small>" if rest else "") + "<br><small>"
            # the notebook (training-hybrid: training.ipynb), which Jupyter Lab opens; the book's build
            # (soundclr.reproduce._for_the_book) links the page named in data-book-page instead
            f"<a href=\"{r['evidence'].split('-')[0]}.ipynb\" data-book-page=\"{r['evidence']}\">"
            f"{PAGE_TITLE.get(r['evidence'], r['evidence'])}</a></small></td>"
            "</tr>")
    head = ("<tr><th>claim</th><th>the paper</th><th>this build: effect [corrected interval] (level); uncorrected "
            "interval, folds; simulated power, size and detectable effect of the rule; tests</th><th>verdict, "
            "evidence</th></tr>")
    return f"<table class=\"claims-ledger\">{head}{''.join(rows)}</table>"


def _row_data(r) -> str:
    """The numbers behind a ledger row's interval, as data attributes (``make check-book`` recomputes the
    interval's width from them and its level label)."""
    keys = {"level": "level", "sd": "sd", "floor": "sd_floor", "rule": "rule", "n": "n", "ratio": "ratio",
            "design": "design", "verdict": "verdict", "detectable": "detectable"}
    return " ".join(f'data-{k}="{html.escape(str(r.get(v, "")))}"' for k, v in keys.items())


def _short(r, prefix: str = "", verdict: bool = True) -> str:
    """``+0.88 [-1.90, +3.66] inconclusive``: an effect, its corrected interval and (``verdict``) verdict."""
    e, lo, hi, v = (r[f"{prefix}effect"], r[f"{prefix}low_nb"], r[f"{prefix}high_nb"], r[f"{prefix}verdict"])
    if not is_number(e) or not v:
        return "n/a"
    unit = r["unit"]
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{number_text(e, unit)} (no interval)"
    return f"{number_text(e, unit)} [{number_text(lo, unit)}, {number_text(hi, unit)}]" + (f" {v}" if verdict else "")


def protocol_table(led: pd.DataFrame) -> pd.DataFrame:
    """Per testable claim, one row per protocol its runs can be scored under: the final epoch (ours),
    the best epoch on the test fold (the paper's) and, where the runs hold one, the best epoch on a
    validation fold; each with its effect, corrected interval and verdict."""
    rows = []
    for _, r in led[led.verdict != "not testable"].iterrows():
        for name, prefix in (("final", ""), ("best_test", "best_test_"), ("best_val", "best_val_")):
            if not is_number(r[f"{prefix}effect"]) or not r[f"{prefix}verdict" if prefix else "verdict"]:
                continue
            unit = r["unit"]
            lo, hi = r[f"{prefix}low_nb"], r[f"{prefix}high_nb"]
            rows.append({"claim": r["id"], "protocol": PROTOCOL_LABEL[name],
                         "effect [corrected interval]": f"{number_text(r[f'{prefix}effect'], unit)} [{number_text(lo, unit)}, {number_text(hi, unit)}]"
                         if math.isfinite(lo) and math.isfinite(hi) else f"{number_text(r[f'{prefix}effect'], unit)} (no interval)",
                         "verdict": r[f"{prefix}verdict" if prefix else "verdict"]})
    return pd.DataFrame(rows, columns=["claim", "protocol", "effect [corrected interval]", "verdict"]).set_index(
        ["claim", "protocol"])


def protocol_text(led: pd.DataFrame) -> str:
    """How much the paper's protocol (best epoch on the test fold) moves the effects, in words."""
    t = led[(led.verdict != "not testable") & led.best_test_effect.notna()]
    if t.empty:
        return "No claim here has runs scored under both protocols."
    moved = t.best_test_effect - t.effect
    changed = [f"{r.id} ({r.verdict} under the final epoch, {r.best_test_verdict} under the paper's protocol)"
               for r in t.itertuples() if r.best_test_verdict != r.verdict]
    text = (f"Choosing the best epoch on the test fold, as the paper did, moves the {len(t)} effects that can be "
            f"scored both ways by {moved.min():+.2f} to {moved.max():+.2f} points (mean {moved.mean():+.2f}). ")
    if changed:
        text += ("It changes the verdict of " + "; ".join(changed) + ": a maximum taken over the test fold's own "
                 "evaluations is a selection on the test data, and it favours whichever side's accuracy fluctuates "
                 "more or is evaluated more often.")
    else:
        text += "No verdict changes."
    return text


def sensitivity_table(led: pd.DataFrame) -> pd.DataFrame:
    """Per testable claim: every finished run (the primary analysis) beside converged runs only."""
    rows = []
    for _, r in led[led.verdict != "not testable"].iterrows():
        both = r["conv_verdict"]
        rows.append({"claim": r["id"], "every run (primary)": _short(r, "", verdict=False),
                     "converged only": _short(r, "conv_", verdict=False),
                     "verdict": r["verdict"] if both in ("", r["verdict"]) else f"{r['verdict']}, then {both}",
                     "not converged": int(r["unconverged"])})
    return pd.DataFrame(rows).set_index("claim")


def nonconvergence_table(conv: pd.DataFrame) -> pd.DataFrame:
    """Per scheme of the main grid: runs, runs not converged, and the rate."""
    t = conv.groupby("scheme").agg(runs=("converged", "size"), converged=("converged", "sum"))
    t["not converged"] = t["runs"] - t["converged"]
    t["rate"] = (100 * t["not converged"] / t["runs"]).map("{:.0f} %".format)
    return t[["runs", "not converged", "rate"]]
