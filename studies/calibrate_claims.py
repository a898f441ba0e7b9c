"""How often the Claims page's verdict rules are wrong on this design: A/A comparisons of three schemes, a simulator
they validate, and planted effects that add no noise.

    .venv/bin/python studies/calibrate_claims.py            # trains 300 short runs: about 30 min on 2 cores
    .venv/bin/python studies/calibrate_claims.py --report   # only recompute the json and the page

Writes ``studies/calibrate_claims.json`` (every number) and the calibration part of ``book/calibration.md`` (between
its markers; ``studies/nadeau_bengio.py`` writes the other part). Runs land in ``results/calibration/synthetic/main/``
and are reused.

The design is the book's main grid (the quick preset, five test folds of 80 clips, the same schedule), on the tuning
draw (``synthetic_draw=1``: the book's layout, none of its clips). Each of cross-entropy, the hybrid and two-stage
SupCon trains SEEDS seeds on every fold. An A/A comparison splits a scheme's seeds into two arms on every fold and
compares them exactly as the ledger compares two schemes (:mod:`soundclr.analysis.calibration`); ten comparisons of
one seed per arm and five of two are what the runs allow, and the simulator (fitted to the same runs and checked
against them) gives each rate to a Monte Carlo error of under half a point.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from soundclr.analysis import rule  # noqa: E402
from soundclr.analysis.calibration import calibrate, correctness_table  # noqa: E402
from soundclr.book.plan import make_plan  # noqa: E402

sys.path.insert(0, str(ROOT / "studies"))
from common import save, study_args, train_runs, write_section  # noqa: E402
from calibration_page import MARKERS, read, rule_section, section  # noqa: E402

RESULTS = ROOT / "results" / "calibration"
OUT_JSON = ROOT / "studies" / "calibrate_claims.json"
PAGE = ROOT / "book" / "calibration.md"
SEEDS = 20               # per fold and scheme: ten disjoint A/A comparisons of one seed per arm, five of two
SCHEMES = ("ce", "hybrid", "supcon")
DRAW = 1                 # the tuning draw: the book never tests on it


def plan():
    return make_plan("synthetic", "quick", results=str(RESULTS), data_root=str(ROOT / "data"),
                     seeds=list(range(SEEDS)), synthetic_draw=DRAW, device="cpu", checkpoint_seconds=1e9)


def runs():
    return plan().main_runs(schemes=list(SCHEMES))


def main() -> int:
    import time
    args = study_args(__doc__, runs)
    if args is None:
        return 0
    t0 = time.time()
    if not args.report:
        train_runs(runs, args.workers, __file__, str(RESULTS))
    table = correctness_table(runs())
    result = {"date": time.strftime("%Y-%m-%d"), "draw": DRAW, "seeds": SEEDS, "rule": rule.RULE, "schemes": {}}
    for scheme in SCHEMES:
        t = table[table.scheme == scheme]
        complete = sorted(set.intersection(*(set(g.seed) for _, g in t.groupby("fold"))))
        if len(complete) < SEEDS:
            raise SystemExit(f"{scheme}: {SEEDS - len(complete)} seeds are unfinished on some fold: run without --report")
        result["schemes"][scheme] = calibrate(t[t.seed.isin(complete)])
        result["schemes"][scheme]["run_seconds"] = float(t.seconds.sum())
        print(scheme, {m: {r: f"{a['false_positive'][r]['hits']}/{a['comparisons']} sim {100 * a['simulated'][r]['rate']:.1f}%"
                           for r in rule.RULES} for m, a in result["schemes"][scheme]["arms"].items()}, flush=True)
    result["study_seconds"] = round(time.time() - t0)
    save(OUT_JSON, result, PAGE, MARKERS["calibration"], section(result), report=args.report)
    write_section(PAGE, MARKERS["rule"], rule_section(read("calibrate_claims.json"), read("nadeau_bengio.json")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
