"""Does the Nadeau-Bengio correction fit a single k-fold design? Checked where only a generator can check it: on
independent draws of the synthetic dataset, each through the whole five-fold cross-validation of the hybrid
against cross-entropy.

    .venv/bin/python studies/nadeau_bengio.py            # trains 200 short runs: about 20 min on 2 cores
    .venv/bin/python studies/nadeau_bengio.py --report   # only recompute the json and the page

A real dataset is one draw: its five fold differences show how the difference varies from fold to fold, not how
the cross-validation mean would vary over datasets, which is what an interval for the population difference
needs. The generator makes that measurable. Draws 2 to 21 (the book tests on draw 0 and tunes on draw 1), the quick
preset's main grid, one seed per scheme and fold: the across-draw variance of the CV mean difference is set against
the mean of each rule's variance estimate, and each rule's interval against the population difference (the mean
over the other draws) (:func:`soundclr.analysis.calibration.draws_check`). Writes ``studies/nadeau_bengio.json`` and
its part of ``book/calibration.md``.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from soundclr.analysis import rule  # noqa: E402
from soundclr.analysis.calibration import correctness_table, draws_check  # noqa: E402
from soundclr.book.plan import make_plan  # noqa: E402

sys.path.insert(0, str(ROOT / "studies"))
from common import save, study_args, train_runs, write_section  # noqa: E402
from calibration_page import MARKERS, draws_section, read, rule_section  # noqa: E402

RESULTS = ROOT / "results" / "draws"
OUT_JSON = ROOT / "studies" / "nadeau_bengio.json"
PAGE = ROOT / "book" / "calibration.md"
DRAWS = range(2, 22)
SCHEMES = ("hybrid", "ce")


def draw_plan(d: int):
    return make_plan("synthetic", "quick", results=str(RESULTS / f"draw{d}"), data_root=str(ROOT / "data"), seeds=[0],
                     synthetic_draw=d, device="cpu", checkpoint_seconds=1e9)


def runs():
    return [r for d in DRAWS for r in draw_plan(d).main_runs(schemes=list(SCHEMES))]


def main() -> int:
    args = study_args(__doc__, runs)
    if args is None:
        return 0
    t0 = time.time()
    if not args.report:
        train_runs(runs, args.workers, __file__, str(RESULTS))
    per_draw = []
    for d in DRAWS:
        table = correctness_table(draw_plan(d).main_runs(schemes=list(SCHEMES)))
        folds = sorted(set(table.fold))
        left = [np.stack(list(table[(table.scheme == "hybrid") & (table.fold == f)].correct)) for f in folds]
        right = [np.stack(list(table[(table.scheme == "ce") & (table.fold == f)].correct)) for f in folds]
        terms = rule.fold_terms(left, right, clips=True)
        per_draw.append({"draw": d, "d": [float(x) for x in terms["d"][0]],
                         "floor": float(rule.floor_variance(terms)[0]), "seconds": float(table.seconds.sum())})
    ratio = 1 / (len(per_draw[0]["d"]) - 1)
    result = {"date": time.strftime("%Y-%m-%d"), "per_draw": per_draw, **draws_check(per_draw, ratio=ratio),
              "run_seconds": float(sum(x["seconds"] for x in per_draw)), "study_seconds": round(time.time() - t0)}
    print({k: result[k] for k in ("population", "across_variance", "across_interval", "shared_variance")},
          {n: (round(r["ratio"], 2), f"{r['coverage']['hits']}/{r['coverage']['n']}") for n, r in result["rules"].items()})
    save(OUT_JSON, result, PAGE, MARKERS["draws"], draws_section(result), report=args.report)
    write_section(PAGE, MARKERS["rule"], rule_section(read("calibrate_claims.json"), read("nadeau_bengio.json")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
