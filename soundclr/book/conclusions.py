"""The conclusion blocks of the book's pages, written from the ledger: what each page's claims show,
the summary with Holm, what this build can and cannot test, the fairness of the comparisons.
"""
from __future__ import annotations

import json
from typing import Sequence

import numpy as np
import pandas as pd

from ..analysis.claims import BY_DESIGN, VERDICTS
from ..analysis.rule import RULE
from ..analysis.convergence import (
    LAST_EVALS,
    LOSS_TOLERANCE,
    SPREAD_SES,
    spread_tolerance,
)
from ..datasets import get as dataset_of
from ..schemes import PAPER_SCHEMES, label_of
from ..schemes import get as scheme_of
from ..files import SOURCE_ROOT
from .plan import FILL_LABELS
from .prose import is_number, number_text, interval_text


def likely_reason(cid: str, plan) -> str:
    """One sentence on why a result here may differ from the paper's, from what this build is."""
    c = plan.config
    if c.model.backbone == "tiny" or c.model.weights != "imagenet" or not dataset_of(c.data.dataset).paper:
        parts = []
        if c.model.weights != "imagenet":
            parts.append("no ImageNet pretraining")
        if c.model.backbone == "tiny":
            parts.append("a tiny network instead of ResNet-50")
        if dataset_of(c.data.dataset).generated:
            parts.append("a toy dataset with a few hundred training clips per fold")
        elif not dataset_of(c.data.dataset).paper:
            parts.append(f"another dataset ({dataset_of(c.data.dataset).title}) than the paper's")
        parts.append(f"{c.optim.epochs} epochs instead of 800")
        return f"this build differs from the paper's setting: {', '.join(parts)}."
    return ("the paper reports the best epoch on the test fold and one run per fold, while this build scores the "
            "final epoch and treats the fold as the unit.")


def conclusion(led: pd.DataFrame, ids: Sequence[str], plan, reasons: dict[str, str] | None = None) -> str:
    """Markdown: for each claim in ``ids``, what this build shows, whether it agrees with the paper
    and, only where it does not, the reason (from ``reasons``, computed by the page from its evidence,
    or :func:`likely_reason`)."""
    lines = []
    for _, r in led[led.id.isin(ids)].iterrows():
        paper = (f"the paper: {number_text(r['paper'], r['unit'])} {r['unit']}, {r['paper_source']}" if is_number(r["paper"])
                 else f"the paper: {r['paper_source']}")
        if r["verdict"] == "not testable":
            why = str(r["note"] or "").rstrip(".")       # the note holds the reason only (the verdict says "not testable")
            lines.append(f"- **{r['id']}, {r['claim']}**: not testable here" + (f": {why}" if why else "") + ".")
            continue
        text = f"**{r['id']}, {r['claim']}**: {r['verdict_text']}; {interval_text(r, plain=False)} ({paper})."
        if r["verdict"] == "supported":
            text += " This agrees with the paper."
        elif r["verdict"] == "contradicted":
            text += f" This contradicts the paper. Why: {(reasons or {}).get(r['id']) or likely_reason(r['id'], plan)}"
        if r["note"]:
            text += f" ({r['note'][0].upper()}{r['note'][1:]}.)"
        if r.get("detail"):
            text += f" {r['detail'][0].upper()}{r['detail'][1:]}."
        lines.append(f"- {text}")
    return "\n".join(lines)


def convergence_summary(conv: pd.DataFrame) -> str:
    """Markdown: how many runs converged, and why the others did not."""
    if conv.empty:
        return "No finished run to test yet."
    ok = int(conv.converged.sum())
    n_test = sorted({int(round((SPREAD_SES * 0.5 / t) ** 2)) for t in conv.tolerance})
    text = (f"**{ok} of {len(conv)}** runs meet the convergence criterion: over the last tenth of its epochs the "
            f"training loss moves less than {100 * LOSS_TOLERANCE:g} % of its whole descent, and the last {LAST_EVALS} "
            f"test evaluations lie within {SPREAD_SES:g} binomial standard errors of the test fold (at 50 % accuracy, "
            f"the largest error: {', '.join(f'{100 * spread_tolerance(n):.1f} points for {n} clips' for n in n_test)}; "
            f"{100 * spread_tolerance(400):.1f} on an ESC-50 fold). The largest loss move is "
            f"{100 * conv.loss_change.max():.1f} % and the widest spread {100 * conv.spread.max():.1f} points.")
    bad = conv[~conv.converged]
    if len(bad):
        text += (" Not converged (kept in the primary analysis, left out of the converged-only check): "
                 + "; ".join(f"{r.scheme} fold {r.fold} seed {r.seed} ({r.reasons})" for r in bad.itertuples()) + ".")
    return text


def reductions_text(plan) -> str:
    lines = [f"- {r[0].upper()}{r[1:]}." for r in plan.reductions]
    c = plan.config.resolved()
    if c.model.weights != "imagenet" or c.model.backbone != "resnet50":
        lines.append(f"- The network is `{c.model.backbone}` with weights `{c.model.weights}` (the paper: ResNet-50 "
                     "pretrained on ImageNet), so claims about transfer learning cannot be tested here.")
    if c.optim.epochs < 800:
        lines.append(f"- {c.optim.epochs} epochs instead of 800 for every scheme, with the schedule scaled to fit "
                     "([the tuning page](../book/tuning.md) shows how they were chosen).")
    a = c.augment
    if (a.freq_masks, a.time_masks) != (2, 1):
        what = "no spectrogram masks" if (a.freq_masks, a.time_masks) == (0, 0) else \
            f"{a.freq_masks} frequency and {a.time_masks} time masks"
        lines.append(f"- The main grid trains with {what} (the paper: f = 2, t = 1), chosen on the tuning draw, "
                     "where the paper's masks cost accuracy ([the tuning page](../book/tuning.md)); every scheme trains with "
                     "the same augmentation. [The ablation page](ablation.ipynb) tests the paper's masks.")
    lines.append("- Every other setting that differs from the paper is listed under the Settings line at the top of this "
                 "page (*Every setting of this page*).")
    return "\n".join(lines)


def summary_text(led: pd.DataFrame, plan) -> str:
    """The page's summary: verdict counts (claims that hold by design apart), Holm's adjustment over the
    tested family, what five folds allow an exact test, the power at both SDs, and the measured calibration."""
    counts = led.verdict.value_counts()
    words = {BY_DESIGN: "hold by design (measured, not tested)"}
    parts = [f"{counts.get(v, 0)} {words.get(v, v)}" for v in VERDICTS if counts.get(v, 0)]
    text = f"Of the {len(led)} claims: " + ", ".join(parts) + "."
    for v in ("supported", "contradicted", BY_DESIGN):
        ids = list(led[led.verdict == v].id)
        if ids:
            text += f" {v.capitalize()}: {', '.join(ids)}."
    fam = led[led.p.notna()]
    if len(fam):
        sig = list(fam[fam.p_holm < 0.05].id)
        outside = [r.id for r in led.itertuples() if r.verdict not in ("not testable", BY_DESIGN) and r.id not in set(fam.id)]
        text += (f" Each verdict is a test at 5 %. Holm's adjustment takes the {len(fam)} tests with a p value as one "
                 f"family ({', '.join(fam.id)}) and keeps the chance of any false verdict among them at 5 %"
                 + (f"; {', '.join(outside)} stand{'s' if len(outside) == 1 else ''} outside it (a verdict without a p "
                    "value)" if outside else "")
                 + ": " + (f"{len(sig)} remain{'s' if len(sig) == 1 else ''} significant: {', '.join(sig)}." if sig
                           else "none remains significant."))
    folds = led[(led.design == "folds") & (led.n > 1)].n
    if len(folds):
        k = int(folds.max())
        text += (f" With {k} folds the exact sign-flip test cannot go below p = {2 / 2 ** k:.4f}"
                 + (", so a fold-level result significant at 5 % rests on the t test's assumption that fold differences "
                    "are normal." if 2 / 2 ** k > 0.05 else "."))
    pw = led[led.power.notna() & (led.design == "folds")]
    if len(pw):
        text += (f" At this size the rule has {100 * pw.power.min():.0f} to {100 * pw.power.max():.0f} % power at the "
                 "paper's own effects (simulated from the noise model with the rule itself), so an inconclusive verdict "
                 "is what it would most often show even if the paper were right: it means \"cannot tell\", not \"no "
                 "effect\".")
    cal = calibration_text()
    return text + (" " + cal if cal else "")


CALIBRATION = SOURCE_ROOT / "studies" / "calibrate_claims.json"
DRAWS = SOURCE_ROOT / "studies" / "nadeau_bengio.json"


def calibration(path=None) -> dict | None:
    """The committed output of ``studies/calibrate_claims.py`` (or of the study at ``path``; None where this
    checkout lacks it)."""
    try:
        return json.loads((path or CALIBRATION).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _pct(r: dict) -> str:
    return f"{r['hits']} of {r['n']} ({100 * r['rate']:.0f} %, 95 % interval [{100 * r['low']:.0f}, {100 * r['high']:.0f}])"


SCHEME_WORDS = {"ce": "cross-entropy", "hybrid": "the hybrid", "supcon": "two-stage SupCon"}


def calibration_text() -> str:
    """Markdown: how the ledger's rule behaved in the calibration of this design (the book's calibration page): per
    scheme, the real A/A comparisons of the book's two seeds per arm and the simulated size; the draws study's
    coverage."""
    c = calibration()
    if not c or "schemes" not in c:
        return ("The verdict rules have not been calibrated in this checkout (`studies/calibrate_claims.py` writes "
                "the calibration page).")
    parts = []
    for s, r in c["schemes"].items():
        a = r["arms"].get("2") or next(iter(r["arms"].values()))
        sim = a["simulated"][RULE]
        parts.append(f"{SCHEME_WORDS.get(s, s)} {a['false_positive'][RULE]['hits']} of {a['comparisons']} real, "
                     f"{100 * sim['rate']:.1f} % ± {100 * sim['mc']:.1f} simulated")
    text = (f"**Calibrated on this design** ([the calibration page](../book/calibration.md)): in A/A comparisons (a "
            f"scheme against itself, two seeds per arm and fold, the truth zero) the ledger's rule (`{RULE}`) gave a "
            f"verdict in {'; '.join(parts)}.")
    d = calibration(DRAWS)
    if d and RULE in d.get("rules", {}):
        cov = d["rules"][RULE]["coverage"]
        text += (f" Over {d['draws']} independent draws of the dataset its interval held the population difference in "
                 f"{_pct(cov)}.")
    return text


def page_conclusion(led: pd.DataFrame | None, ids: Sequence[str], plan, lead: str | None = None,
                    reasons: dict[str, str] | None = None) -> str:
    """The conclusion block of a generated page: the claims it holds evidence for, from the ledger."""
    if led is None:
        return ("The runs this conclusion needs are not all finished yet: train them (`soundclr reproduce`, or run "
                "the other pages) and run this page again.")
    return (lead + "\n\n" if lead else "") + conclusion(led, ids, plan, reasons)


def silhouette_conclusion(scores: dict) -> str:
    """Markdown from the silhouette scores ``{(scheme, space): score}``: which scheme separates the
    classes best in h and in z, and whether the contrastive schemes beat cross-entropy in h.
    Cross-entropy's projection z is left out of the ranking: no loss trains its projection head, so
    its z is a random linear map of h, not a representation any scheme learnt."""
    untrained = {k for k in scores if k[1] == "projection" and not scheme_of(k[0]).trains_projection}
    lines = []
    for space, symbol in (("representation", "h"), ("projection", "z")):
        s = {k[0]: v for k, v in scores.items() if k[1] == space and k not in untrained}
        left_out = [k[0] for k in scores if k[1] == space and k in untrained]
        note = "".join(f" {label_of(k)}'s ${symbol}$ (silhouette {scores[(k, space)]:.2f}) is left out: no loss "
                       f"trains its projection head, so it is an untrained random map of $h$." for k in left_out)
        if not s:
            if note:
                lines.append(note.strip())
            continue
        if len(s) == 1:
            (only, v), = s.items()
            lines.append(f"In the {space} space ${symbol}$ only {label_of(only)} has a trained map to rank "
                         f"(silhouette {v:.2f})." + note)
            continue
        shown = {k: round(v, 2) for k, v in s.items()}          # a tie at the shown precision is a tie, not a win
        leaders = [k for k in s if shown[k] == max(shown.values())]
        rest = ", ".join(f"{label_of(k)} {v:.2f}" for k, v in s.items() if k not in leaders)
        if len(leaders) == 1:
            lines.append(f"In the {space} space ${symbol}$ the classes separate best under {label_of(leaders[0])} "
                         f"(silhouette {s[leaders[0]]:.2f}; {rest})." + note)
        else:
            lines.append(f"In the {space} space ${symbol}$ the classes separate equally well under "
                         f"{' and '.join(label_of(k) for k in leaders)} (silhouette {shown[leaders[0]]:.2f} each"
                         + (f"; {rest}" if rest else "") + ")." + note)
    h = {k[0]: v for k, v in scores.items() if k[1] == "representation"}
    if set(PAPER_SCHEMES) <= set(h):
        better = [k for k in ("supcon", "hybrid") if h[k] > h["ce"]]
        agree = "agrees" if len(better) == 2 else "partly agrees" if better else "does not agree"
        lines.append(f"The paper's argument (the contrastive term separates the classes in the representation space) "
                     f"{agree} with this one run per scheme: "
                     + (f"{' and '.join(label_of(k) for k in better)} separate{'s' if len(better) == 1 else ''} "
                        f"the classes better than cross-entropy in $h$." if better else
                        "cross-entropy separates the classes at least as well in $h$.")
                     + " One run per scheme is a picture, not a test; Table III and the claims ledger are the test.")
    return "\n\n".join(lines)


def scope_text(plan) -> str:
    """The first screen of the Claims notebook: what this build ran, what it can test and what it cannot, and
    how to test the rest."""
    c = plan.config.resolved()
    runs = plan.all_runs()
    title = "the synthetic set" if dataset_of(c.data.dataset).generated else dataset_of(c.data.dataset).title
    net = ("ResNet-50 pretrained on ImageNet" if (c.model.backbone, c.model.weights) == ("resnet50", "imagenet")
           else f"the `{c.model.backbone}` network ({'ImageNet weights' if c.model.weights == 'imagenet' else 'random initialisation'})")
    text = (f"**What this build ran**: {len(runs)} training runs on {title} ({c.n_folds} folds, "
            f"{len(plan.seeds)} seed{'s' if len(plan.seeds) != 1 else ''} per fold in the main grid), {net}, "
            f"{c.optim.epochs} epochs per scheme.")
    if not dataset_of(c.data.dataset).paper or c.model.backbone != "resnet50":
        text += (" **What it can test**: whether each of the paper's claims holds *for this network on these data*, "
                 "with statistics that say how large an effect this size can see. **What it cannot test**: any claim "
                 "about ESC-50, ESC-10 or UrbanSound8K, or about ResNet-50 and ImageNet transfer; a verdict here is "
                 "about the toy, not the paper. **To test the paper itself**: `soundclr reproduce --dataset esc50 "
                 "--preset paper --device cuda` on a GPU; the [Reproducing](../book/reproduce.md) page gives its cost, and the "
                 "table at the end of this page how many seeds a decisive test needs.")
    return text


def fairness_text(led: pd.DataFrame, plan) -> str:
    """Markdown: the schedule and augmentation every scheme trained with, and the per-run check that
    both sides of each comparison trained the same schedule."""
    c = plan.config.resolved()
    o, a = c.optim, c.augment
    masks = ("no spectrogram masks" if (a.freq_masks, a.time_masks) == (0, 0) else
             f"{a.freq_masks} frequency and {a.time_masks} time masks filled with `{a.mask_fill}`")
    text = (f"Every scheme trains {o.epochs} epochs (warm-up {o.warmup_epochs}, decay {o.gamma:.4f} per epoch, "
            f"learning rate {o.lr:g}, batch {o.batch_size}), and the two-stage scheme's linear classifier "
            f"{o.stage2_epochs} more on top of its {o.epochs} SupCon epochs, as in the paper (800 and 800); every run "
            f"uses the same wave augmentation and {masks}.")
    if o.contrastive_stretch != 1:
        text += (f" **The contrastive stages are stretched {o.contrastive_stretch:g} times** (`contrastive_stretch`): "
                 "the schemes do not train the same schedule, and the comparisons below are not the paper's.")
    t = led[led.verdict != "not testable"]
    unfair = list(t[~t.same_schedule.astype(bool)].id)
    text += (f" Checked run by run: in {len(t) - len(unfair)} of the {len(t)} comparisons tested here both sides "
             "trained the same schedule (epochs, warm-up, decay, learning rate and batch).")
    if unfair:
        text += f" **Not the same schedule**: {', '.join(unfair)}."
    return text


def fill_reason(fill: pd.DataFrame, plan) -> str | None:
    """C4b's reason when the masks hurt, computed from the mask-fill table (``report.variant_table`` of
    the fill runs): when the paper's fill (0 dB, the loudest value) scores well below the best fill on
    the same runs' folds, the fill is the cause; None when the table does not show that."""
    if fill is None or "fill-zero" not in fill.index or len(fill) < 2:
        return None
    best = fill["mean"].idxmax()
    gap = fill.loc[best, "mean"] - fill.loc["fill-zero", "mean"]
    spread = float(np.nanmax([fill.loc["fill-zero", "sd"], fill.loc[best, "sd"], 0.0]))
    if best == "fill-zero" or gap <= spread:     # within the folds' spread: the table cannot name the cause
        return None
    return (f"the masks are filled with 0 dB, the loudest value of each clip (the paper's fill); on the mask-fill "
            f"table's folds that fill scores {fill.loc['fill-zero', 'mean']:.2f} %, and {FILL_LABELS[best[5:]]} "
            f"{fill.loc[best, 'mean']:.2f} % with the same masks, {gap:.1f} points more: the fill, not the masking, "
            "costs the accuracy here.")
