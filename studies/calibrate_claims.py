"""How often the Claims page's verdict rules are wrong on this design: A/A comparisons and a planted effect.

    .venv/bin/python studies/calibrate_claims.py            # trains 200 short runs: about 55 min on 2 cores
    .venv/bin/python studies/calibrate_claims.py --report   # only recompute the json and the page

Writes ``studies/calibrate_claims.json`` (every number) and ``book/calibration.md`` (the book's page,
which the Claims page cites). Runs land in ``results/calibration/synthetic/main/`` and are reused.

The design is the book's main grid (the quick preset, five test folds of 80 clips, the same schedule),
on the tuning draw (``synthetic_draw=1``: the book's layout, none of its clips). One scheme,
cross-entropy, trains SEEDS seeds on every fold. An **A/A comparison** splits seeds into two arms on
every fold and compares the arms exactly as the ledger compares two schemes: a scheme cannot beat
itself, so every "significant" result is a false positive, and every interval that misses zero misses
the truth. Comparison j (j = 0..SEEDS/2m - 1) takes seeds ``2mj .. 2mj + 2m - 1`` of each fold, the
first m in arm A: the comparisons share no run, so they are independent and the rates get binomial
(Wilson) intervals. Two arm sizes: m = 1 (20 comparisons) and m = 2 (10; the book's two seeds per
scheme and fold).

Rules measured (each at 5 %, two-sided, as the page uses them; :mod:`soundclr.analysis.calibration`):
the corrected fold-level t test (Nadeau-Bengio, the page's verdicts), the plain fold-level t test,
the exact sign-flip test over the folds, the clip-level paired test over the pooled test clips (the
decisive-test table's second design) and C9's per-fold clip rule. The **planted effect**: in arm B
of each comparison a share of the correct test clips is marked wrong (chosen at random, the same
share on every fold), which lowers arm B by a known amount; the rejection rate is the power the
design really has, set beside the power the page would state.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from soundclr.analysis.calibration import calibrate, correctness_table  # noqa: E402
from soundclr.book.plan import make_plan  # noqa: E402
from soundclr.runs.pool import train_in_processes, work  # noqa: E402

RESULTS = ROOT / "results" / "calibration"
OUT_JSON = ROOT / "studies" / "calibrate_claims.json"
OUT_PAGE = ROOT / "book" / "calibration.md"
SEEDS = 40               # per fold: 20 disjoint A/A comparisons of one seed per arm, 10 of two
SCHEME = "ce"
DRAW = 1                 # the tuning draw: the book never tests on it


def plan():
    return make_plan("synthetic", "quick", results=str(RESULTS), data_root=str(ROOT / "data"),
                     seeds=list(range(SEEDS)), synthetic_draw=DRAW, device="cpu", checkpoint_seconds=1e9)


def runs():
    return plan().main_runs(schemes=[SCHEME])


def train(workers: int) -> None:
    todo = [r for r in runs() if not r.finished]
    if not todo:
        return
    print(f"training {len(todo)} of {len(runs())} runs (progress: soundclr status --results {RESULTS})", flush=True)
    cmd = [sys.executable, __file__, "--worker"]
    for _ in range(3):      # a run held by a worker that died is taken over once its lease is stale
        if workers == 1:
            work(runs(), verbose=False, log=None)
        else:
            train_in_processes(cmd, workers, runs()[0].config)
        if all(r.finished for r in runs()):
            return
        time.sleep(5)
    raise SystemExit(f"{sum(not r.finished for r in runs())} runs did not finish: see soundclr status --results {RESULTS}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--report", action="store_true", help="only write the json and the page from finished runs")
    ap.add_argument("--partial", action="store_true", help="with --report: use the seeds finished on every fold")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        work(runs(), verbose=False, log=None)
        return 0
    t0 = time.time()
    if not args.report:
        train(args.workers)
    table = correctness_table(runs())
    complete = sorted(set.intersection(*(set(g.seed) for _, g in table.groupby("fold"))))
    if len(complete) < SEEDS and not args.partial:
        raise SystemExit(f"--report: {SEEDS - len(complete)} seeds are unfinished on some fold: run without --report "
                         "(or --partial to report the seeds finished on every fold)")
    table = table[table.seed.isin(complete)]
    result = calibrate(table)
    seconds = None if args.report else round(time.time() - t0)        # the wall time of a training invocation only
    if args.report and OUT_JSON.exists():
        seconds = json.loads(OUT_JSON.read_text()).get("seconds")
    result.update(date=time.strftime("%Y-%m-%d"), seconds=seconds, scheme=SCHEME, seeds=len(complete), draw=DRAW,
                  run_seconds=round(float(table.groupby(["fold", "seed"]).seconds.first().sum())))
    OUT_JSON.write_text(json.dumps(result, indent=1) + "\n")
    OUT_PAGE.write_text(write_page(result))
    for m, a in result["arms"].items():
        print(f"{m} seed(s) per arm, {a['comparisons']} comparisons: false positives "
              + ", ".join(f"{rule} {v['hits']}/{v['n']}" for rule, v in a["false_positive"].items())
              + f"; coverage {a['coverage']['hits']}/{a['coverage']['n']}; planted {a['planted']['effect']:.2f} points found "
              f"{a['planted']['rejections']['corrected']['hits']}/{a['comparisons']} (model: 80 %)", flush=True)
    return 0


def _pct(r: dict) -> str:
    return f"{100 * r['rate']:.0f} % [{100 * r['low']:.0f}, {100 * r['high']:.0f}]"


def _judge(r: dict, nominal: float = 0.05) -> str:
    """A rate against its nominal value, by its own interval."""
    if r["high"] < nominal:
        return "below 5 %: conservative"
    if r["low"] > nominal:
        return "above 5 %: too many false positives"
    return "compatible with 5 %"


def write_page(r: dict) -> str:
    arms_ = [r["arms"][m] for m in sorted(r["arms"], key=int)]
    label = r["rules"]
    head = "| rule | " + " | ".join(f"{a['seeds_per_arm']} seed{'s' if a['seeds_per_arm'] > 1 else ''} per arm "
                                    f"({a['comparisons']} comparisons)" for a in arms_) + " |"
    rows = [head, "|---|" + "---|" * len(arms_)]
    for rule in r["rules"]:
        rows.append(f"| {label[rule]} | " + " | ".join(f"{_pct(a['false_positive'][rule])}" for a in arms_) + " |")
    rows.append("| corrected interval holds zero (coverage) | " + " | ".join(_pct(a["coverage"]) for a in arms_) + " |")
    rows.append("| plain interval holds zero | " + " | ".join(_pct(a["coverage_plain"]) for a in arms_) + " |")
    prow = ["| | " + " | ".join(f"{a['seeds_per_arm']} seed{'s' if a['seeds_per_arm'] > 1 else ''} per arm" for a in arms_)
            + " |", "|---|" + "---|" * len(arms_)]
    prow.append("| planted effect (points; share of correct clips marked wrong) | " + " | ".join(
        f"{a['planted']['effect']:.2f} ({100 * a['planted']['share']:.1f} %); measured {a['planted']['measured_effect']:.2f}"
        for a in arms_) + " |")
    prow.append("| power the page's model gives at the pooled SD | " + " | ".join(
        f"{100 * a['planted']['model_power']:.0f} %" for a in arms_) + " |")
    prow.append("| power if the fold differences are independent (at the pooled SD) | " + " | ".join(
        f"{100 * a['planted']['independent_power']:.0f} %" for a in arms_) + " |")
    prow.append("| power the page would state (each comparison's own SD, mean) | " + " | ".join(
        f"{100 * a['planted']['stated_power']:.0f} %" for a in arms_) + " |")
    prow.append("| ... at the conservative SD (mean) | " + " | ".join(
        f"{100 * a['planted']['conservative_power']:.0f} %" for a in arms_) + " |")
    for rule in ("corrected", "plain", "signflip", "clips"):
        prow.append(f"| found by: {label[rule]} | " + " | ".join(_pct(a["planted"]["rejections"][rule]) for a in arms_) + " |")
    prow.append("| corrected interval holds the planted effect | " + " | ".join(_pct(a["planted"]["coverage"]) for a in arms_)
                + " |")
    srow = ["| | " + " | ".join(f"{a['seeds_per_arm']} seed{'s' if a['seeds_per_arm'] > 1 else ''} per arm" for a in arms_)
            + " |", "|---|" + "---|" * len(arms_)]
    srow.append("| SD of the fold differences, pooled over the comparisons | " + " | ".join(
        f"{a['sd']['pooled']:.2f} (single comparisons: {a['sd']['min']:.2f} to {a['sd']['max']:.2f})" for a in arms_) + " |")
    srow.append("| clip-sampling floor of that SD | " + " | ".join(f"{a['sd']['floor']:.2f}" for a in arms_) + " |")
    a = max(arms_, key=lambda x: x["comparisons"])
    fp, pl = a["false_positive"], a["planted"]
    found = pl["rejections"]["corrected"]
    power_words = ("falls short of" if found["high"] < pl["model_power"] else
                   "exceeds" if found["low"] > pl["model_power"] else "is compatible with")
    minutes = r["run_seconds"] / 60
    return f"""# Calibrating the verdict rules

**How often does {{gen}}`the Claims page <claims>` call a difference where there is none, and does it find a difference of
the size it says it can?** A verdict rule is only as good as its error rate on the design it is used on.
This page measures it on the book's own design: the `quick` preset's main grid, five test folds of
{r['clips_per_fold']} clips, the same schedule, on the tuning draw (a synthetic set with the book's layout and
none of its clips, `synthetic_draw = {r['draw']}`). One scheme, {r['scheme'] == 'ce' and 'cross-entropy' or r['scheme']},
trained {r['seeds']} seeds on every fold ({r['seeds'] * r['folds']} runs, {minutes:.0f} minutes of CPU time). The
study is the script `studies/calibrate_claims.py`; this page is its output (written on {r['date']}; every number is
in `studies/calibrate_claims.json`).

**A/A comparisons.** The seeds of every fold are split into two arms, and the arms are compared exactly as
the ledger compares two schemes. Both arms are the same training procedure, so the true effect is zero: a
rejection is a false positive, and an interval that misses zero misses the truth. Comparison *j* takes
seeds 2*mj* to 2*mj* + 2*m* − 1 of every fold (the first *m* in arm A), so no two comparisons share a run; the
rates are independent trials, and each has its 95 % Wilson interval. With one seed per arm there are
{r['arms']['1']['comparisons'] if '1' in r['arms'] else 0} comparisons; with two (the book's main grid trains two
seeds per scheme and fold) half as many. One seed per arm makes the fold differences less normal than the
book's two, so it is the harder case for the t tests.

## False positives and coverage (A/A: the truth is zero)

Each rule at 5 %, as the ledger applies it; in brackets the 95 % Wilson interval of the rate.

{chr(10).join(rows)}

What this shows, with {a['comparisons']} comparisons of {a['seeds_per_arm']} seed per arm:

- The corrected fold-level test (the verdicts): {_pct(fp['corrected'])}, {_judge(fp['corrected'])}. In an A/A
  comparison the two arms' training sets are the same, so the fold differences carry no training-set term for the
  Nadeau-Bengio factor to correct: here it can only widen the interval. On a real comparison of two schemes it
  is an approximation whose size this design cannot measure; the book keeps it as the conservative choice.
- The plain fold-level t test: {_pct(fp['plain'])}, {_judge(fp['plain'])}.
- The exact sign-flip test over the folds: {_pct(fp['signflip'])}. With {r['folds']} folds its smallest p value is
  {2 / 2 ** r['folds']:.4f}, so at 5 % it can never reject: it is shown on {{gen}}`the Claims page <claims>` beside the t test as a
  reminder of what five folds allow, not as a verdict rule.
- The clip-level paired test over the pooled clips: {_pct(fp['clips'])}, {_judge(fp['clips'])}. {CLIP_WORDS[_judge(fp['clips'])]}
- C9's per-fold rule (contradicted when a rival is better by more than the non-inferiority margin, simultaneous
  over the folds): {_pct(fp['c9'])}. It, too, counts only clip sampling.

## The planted effect: is the stated power the power it has?

In arm B of every comparison, each correct test clip of each run is marked wrong with a fixed probability,
which lowers arm B by that share of its accuracy: a true effect of known size. The size is the one the
page's model says the corrected test finds with 80 % power at the SD the A/A comparisons measured (pooled over
all of them, a precise estimate). The page states power from each comparison's own SD (four degrees of freedom),
and conservatively from the larger of that SD's upper confidence bound and the clip-sampling floor.

{chr(10).join(prow)}

The corrected test found the planted effect in {_pct(found)}, which {power_words} the
{100 * pl['model_power']:.0f} % the page's model promises. That model treats the Nadeau-Bengio variance as the true
variance of the mean. Where the folds' differences are in fact independent, as in an A/A design, the corrected
statistic is the plain one divided by {math.sqrt((1 / r['folds'] + r['ratio']) * r['folds']):.2f}: its false-positive
rate falls below 5 %, and its power at this effect is {100 * pl['independent_power']:.0f} % rather than the model's
{100 * pl['model_power']:.0f} % (the measured rate is to be read against both). The power the page states from a single comparison's SD
averages {100 * pl['stated_power']:.0f} %, and the conservative figure {100 * pl['conservative_power']:.0f} %: the
{{gen}}`Claims page <claims>`'s verdict words use the conservative one.

## The spread of the fold differences

{chr(10).join(srow)}

The clip-sampling floor is the spread that sampling the test clips alone causes in expectation (two models
tested on the same {r['clips_per_fold']} clips disagree on some of them); with seed-to-seed variation on top, the
fold differences should vary at least this much. Here the pooled SD is {a['sd']['pooled'] / a['sd']['floor']:.2f}
times the floor (one seed per arm): {'the spread of two seeds of one scheme is almost all their clip-by-clip disagreement' if a['sd']['pooled'] / a['sd']['floor'] < 1.25 else 'seeds add a spread beyond their clip-by-clip disagreement'}.
The {{gen}}`Claims page <claims>`'s conservative SD is the larger of this floor and the SD's upper confidence bound.
"""


CLIP_WORDS = {   # the clip-level test's behaviour, by what its A/A rate showed
    "compatible with 5 %": "Its standard error is the spread of the per-clip differences; two seeds of one scheme "
                           "disagree clip by clip, so that spread already holds the seed-to-seed variation that is "
                           "independent from clip to clip, and in this A/A design it keeps its rate. It treats the training "
                           "sets as fixed: it answers a question about the trained models on this population of clips.",
    "below 5 %: conservative": "Its standard error, the spread of the per-clip differences, is larger than the "
                               "variation it meets here.",
    "above 5 %: too many false positives": "Its standard error counts the per-clip differences only; what two seeds "
                                           "of one scheme add beyond them it takes for signal.",
}



if __name__ == "__main__":
    sys.exit(main())
