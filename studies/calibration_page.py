"""The calibration page's generated sections (``book/calibration.md``): the A/A study (``calibrate_claims.py``), the
draws study (``nadeau_bengio.py``) and the choice of the verdict rule that both decide. Each study writes its own
section and then the rule's, from both studies' committed json."""
from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKERS = {
    "calibration": ("<!-- calibration: written by studies/calibrate_claims.py -->", "<!-- /calibration -->"),
    "draws": ("<!-- draws: written by studies/nadeau_bengio.py -->", "<!-- /draws -->"),
    "rule": ("<!-- rule: written by either study -->", "<!-- /rule -->"),
}
LABEL = {"plain": "plain t", "nb": "Nadeau-Bengio", "floor-plain": "plain t, floor-bounded SD",
         "floor-nb": "Nadeau-Bengio, floor-bounded SD"}
SCHEME = {"ce": "cross-entropy", "hybrid": "hybrid", "supcon": "two-stage SupCon"}


def _rate(r: dict) -> str:
    return f"{r['hits']} of {r['n']} ({100 * r['rate']:.0f} %, 95 % interval [{100 * r['low']:.0f}, {100 * r['high']:.0f}])"


def _rules_out(r: dict) -> str:
    """What a rate's interval rules out, in words."""
    if r["high"] < 0.05:
        return f"rules out rates above {100 * r['high']:.0f} %"
    return f"cannot rule out rates up to {100 * r['high']:.0f} %"


def _sim(s: dict) -> str:
    return f"{100 * s['rate']:.1f} % ± {100 * s['mc']:.1f}"


def section(cal: dict) -> str:
    from soundclr.analysis.rule import RULES
    schemes = list(cal["schemes"])
    rows = ["| scheme, seeds per arm | comparisons | " + " | ".join(LABEL[r] for r in RULES) + " |",
            "|---|---|" + "---|" * len(RULES)]
    for s in schemes:
        for m, a in cal["schemes"][s]["arms"].items():
            rows.append(f"| {SCHEME[s]}, {m} | {a['comparisons']} real; {a['simulated'][next(iter(RULES))]['sims']} "
                        "simulated | " + " | ".join(f"{a['false_positive'][r]['hits']} of {a['comparisons']}; "
                                                    f"{_sim(a['simulated'][r])}" for r in RULES) + " |")
    val = ["| scheme, seeds per arm | fold SD, real quartiles | simulated quartiles | KS p: fold SDs | KS p: p values |",
           "|---|---|---|---|---|"]
    for s in schemes:
        for m, a in cal["schemes"][s]["arms"].items():
            v = a["validation"]
            val.append(f"| {SCHEME[s]}, {m} | {', '.join(f'{x:.2f}' for x in v['sd_quartiles_real'])} | "
                       f"{', '.join(f'{x:.2f}' for x in v['sd_quartiles_simulated'])} | {v['sd_ks_p']:.2f} | "
                       f"{v['p_ks_p']:.2f} |")
    low_ks = [f"{SCHEME[s]} ({m} per arm)" for s in schemes for m, a in cal["schemes"][s]["arms"].items()
              if min(a["validation"]["sd_ks_p"], a["validation"]["p_ks_p"]) < 0.05]
    plant = ["| scheme | plant | measured effect (points) | found by the ledger's rule (real) | simulated power at that effect |",
             "|---|---|---|---|---|"]
    for s in schemes:
        p = cal["schemes"][s]["planted"]
        for kind in ("fixed", "varying"):
            x = p[kind]
            plant.append(f"| {SCHEME[s]} | {'the same clips on every fold' if kind == 'fixed' else 'a share that varies by fold'} "
                         f"| {x['measured']:.2f} | {_rate(x['found'])} | {100 * x['simulated_power']:.0f} % ± "
                         f"{100 * x['simulated_mc']:.1f} |")
    c9 = []
    for s in schemes:
        a = cal["schemes"][s]["arms"].get("2") or next(iter(cal["schemes"][s]["arms"].values()))
        c = a["c9"]
        c9.append(f"{SCHEME[s]}: supported in {_rate(c['supported'])} (simulated {100 * c['simulated_supported']:.0f} %), "
                  f"contradicted in {_rate(c['contradicted'])} (simulated {100 * c['simulated_contradicted']:.1f} %)")
    ce = cal["schemes"].get("ce", cal["schemes"][schemes[0]])
    fp = ce["arms"]["1"]["false_positive"][cal["rule"]]
    minutes = sum(cal["schemes"][s]["run_seconds"] for s in schemes) / 60
    return "\n".join([
        MARKERS["calibration"][0],
        "## False positives: A/A comparisons, real and simulated",
        "",
        f"Each of {', '.join(SCHEME[s] for s in schemes)} trained {cal['seeds']} seeds on every fold of the tuning draw "
        f"(`synthetic_draw = {cal['draw']}`, {minutes:.0f} minutes of CPU time in all; `studies/calibrate_claims.py`, "
        f"{cal['date']}). Each cell: the real A/A comparisons that gave a verdict (the truth is zero), then the rate "
        "among simulated A/A comparisons of the same design, drawn from the noise model fitted to that scheme's runs "
        "and decided by the same rule, with its Monte Carlo error. Ten real comparisons cannot tell 5 % from 15 %; "
        "the simulated ones can, as far as the real runs validate the simulator (next table).",
        "",
        *rows,
        "",
        f"With one seed per arm, cross-entropy's real comparisons gave the ledger's rule (`{cal['rule']}`) a verdict in "
        f"{_rate(fp)}: that {_rules_out(fp)}. The simulated rates are the precise ones.",
        "",
        "**Is the simulator right about these runs?** The real comparisons' fold SDs and p values against the "
        "simulated distributions (Kolmogorov-Smirnov; a p value below 5 % would say the simulator does not describe "
        "the runs):",
        "",
        *val,
        "",
        ("No test rejects the simulator at 5 %." if not low_ks else
         f"The test rejects the simulator for {', '.join(low_ks)}: its rates there are approximate.")
        + " With ten comparisons (five with two seeds per arm) a KS test only catches a gross mismatch; the fold SDs' "
        "quartiles show how close the two are.",
        "",
        "## Planted effects that add no noise",
        "",
        f"In arm B of every one-seed comparison a fixed set of clips is marked wrong in every run (the same clips in "
        f"every comparison), so arm B loses a nearly fixed amount: the effect the simulated rule finds with 80 % power "
        f"at this design ({cal['schemes'][schemes[0]]['planted']['target']:.2f} points for {SCHEME[schemes[0]]}). The "
        "second plant varies from fold to fold (from half to one and a half times the effect), as a training-set "
        "term would; its simulation carries that spread as a training-set term.",
        "",
        *plant,
        "",
        "**C9's rule** on the same A/A comparisons (two seeds per arm; the arms are equal, so \"supported\" is the "
        "truth and \"contradicted\" a false alarm): " + "; ".join(c9) + ".",
        MARKERS["calibration"][1]])


def draws_section(dr: dict) -> str:
    rows = ["| rule | mean variance estimate (points²) | across-draw variance / estimate [95 %] | covers the population difference |",
            "|---|---|---|---|"]
    for name, r in dr["rules"].items():
        lo, hi = r["ratio_interval"]
        rows.append(f"| {LABEL[name]} | {r['mean_estimate']:.2f} | {r['ratio']:.2f} [{lo:.2f}, {hi:.2f}] | "
                    f"{_rate(r['coverage'])} |")
    lo, hi = dr["across_interval"]
    minutes = dr["run_seconds"] / 60
    return "\n".join([
        MARKERS["draws"][0],
        "## The Nadeau-Bengio correction, checked on independent draws",
        "",
        f"A real dataset is one draw. Its folds show how a difference varies from fold to fold, not how the "
        f"cross-validation mean would vary from dataset to dataset, which is what an interval for the schemes' "
        f"population difference needs. The synthetic generator can draw the dataset afresh: {dr['draws']} draws "
        f"(2 to {1 + dr['draws']}), each through the whole five-fold cross-validation of the hybrid against "
        f"cross-entropy, one seed per scheme and fold ({minutes:.0f} minutes of CPU time; `studies/nadeau_bengio.py`, "
        f"{dr['date']}). The population difference is the mean over draws, {dr['population']:+.2f} ± "
        f"{dr['population_se']:.2f} points (each draw is checked against the mean of the others).",
        "",
        f"The cross-validation mean difference varied across draws with variance {dr['across_variance']:.2f} "
        f"points² (95 % interval [{lo:.2f}, {hi:.2f}]). Against it, each rule's mean estimate of that variance "
        "(a ratio of 1 is right; above 1 the rule is too narrow) and its coverage:",
        "",
        *rows,
        "",
        f"The across-draw variance exceeds the plain estimate s²/k by {dr['shared_variance']:+.2f} points² (95 % "
        f"interval [{dr['shared_interval'][0]:+.2f}, {dr['shared_interval'][1]:+.2f}]): the part of the variance the "
        "folds of one dataset share (their overlapping training sets, and the draw itself), which no interval from "
        "one dataset's folds can see, and which the Nadeau-Bengio factor is meant to add. The noise model's "
        f"simulations assume the Nadeau-Bengio share of it ({dr['shared_assumed']:.2f} points² here: n_test / n_train "
        "times the folds' variance beyond the noise floor), " + ("which this interval holds." if
        dr['shared_interval'][0] <= dr['shared_assumed'] <= dr['shared_interval'][1] else
        "which this interval does not hold: the simulated figures are approximate by as much.")
        + f" {dr['draws']} draws measure a variance to within a factor of about two, so this study can rule out a "
        "gross error of a rule, not a small one.",
        MARKERS["draws"][1]])


def rule_section(cal: dict | None, dr: dict | None) -> str:
    from soundclr.analysis.calibration import choose_rule
    from soundclr.analysis.rule import RULE
    if not cal:
        return "\n".join([MARKERS["rule"][0], "The A/A study has not been run in this checkout.", MARKERS["rule"][1]])
    best, why = choose_rule(cal, dr)
    agree = ("The ledger uses it." if best == RULE else
             f"**The ledger uses `{RULE}`, not `{best}`: set `soundclr.analysis.rule.RULE` and rerun the studies.**")
    return "\n".join([
        MARKERS["rule"][0],
        "## Which rule the verdicts use, and why",
        "",
        "An interval may not be narrower than the noise the design guarantees: five folds that happen to agree "
        "must not shrink it below what sampling the test clips and the seeds' own spread add to every fold "
        "difference. So the candidates are the floor-bounded rules, whose SD is the larger of the folds' SD and "
        "that noise floor (what a mixed model with a non-negative training-set term gives): **"
        f"{LABEL['floor-plain']}** (`floor-plain`) and **{LABEL['floor-nb']}** (`floor-nb`). The plain and "
        "Nadeau-Bengio rules without a floor are measured above for reference. The choice, from the two studies:",
        "",
        *[f"- {w}." for w in why],
        "",
        f"So the verdicts use `{best}`. {agree}",
        MARKERS["rule"][1]])


def read(name: str) -> dict | None:
    try:
        return json.loads((ROOT / "studies" / name).read_text())
    except (OSError, ValueError):
        return None

