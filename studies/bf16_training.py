"""Does bf16 autocast *train* as well as fp32? The same runs in both precisions, compared on what the book reports.

    .venv/bin/python studies/bf16_training.py            # trains 20 ResNet-50 runs: about 45 min on 2 cores
    .venv/bin/python studies/bf16_training.py --report   # only recompute the json and the page section

Why training, not a gradient. On one batch at random initialisation, ResNet-50's encoder gradient in
bf16 points elsewhere than in fp32 (cosine 0.2-0.3), but two fp32 summation orders disagree on it too
(0.93), and centring the input makes the bf16 figure worse, not better (issue 24's table). A one-batch
cosine at initialisation measures how chaotic the network is there, not whether bf16 learns: the
question a GPU user needs answered is whether a bf16 run ends as accurate as an fp32 one.

The design. ResNet-50 (random initialisation: no ImageNet weights offline), the hybrid scheme (its loss
holds both the cross-entropy and the SupCon term), on the quick preset's inputs (8 kHz, 32 mel bands,
79 frames: small enough for a CPU, whose AMX units do real bf16 arithmetic under torch's CPU autocast)
with a schedule for ResNet-50 of EPOCHS epochs. Five test folds of the tuning draw (``synthetic_draw=1``,
never a clip the book tests), two seeds, each run in fp32 and in bf16 with the same seed: the same
initial weights, clip order and augmentation draws, so the only difference is the arithmetic.

Compared: the final and the best-on-test accuracy, the learning curves (test accuracy per epoch), the
final training loss, and the SupCon loss of the final model's projections of the test fold. The
bf16-minus-fp32 difference (averaged over the two seeds of each fold) gets the book's fold-level
interval (Nadeau-Bengio corrected, 4 df); the seed-to-seed difference (seed 0 minus seed 1, in each
precision) measures how far a run moves when only its random draws change. bf16 trains as well as fp32
when its difference is within that spread and its interval lies inside +-TOLERANCE points.

Writes ``studies/bf16_training.json`` and the section between the markers in ``book/reproduce.md``.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from soundclr.analysis.stats import fold_interval  # noqa: E402
from soundclr.book.plan import make_plan  # noqa: E402
from soundclr.losses import supcon_loss  # noqa: E402
from soundclr.train.record import read_metrics  # noqa: E402

sys.path.insert(0, str(ROOT / "studies"))
from common import save, schedule, study_args, train_runs  # noqa: E402

RESULTS = ROOT / "results" / "bf16"
OUT_JSON = ROOT / "studies" / "bf16_training.json"
PAGE = ROOT / "book" / "reproduce.md"
MARKERS = ("<!-- bf16-study: written by studies/bf16_training.py -->", "<!-- /bf16-study -->")
PRECISIONS = ("fp32", "bf16")
SCHEME = "hybrid"
SEEDS = [0, 1]
DRAW = 1
EPOCHS = 24
TOLERANCE = 5.0          # points: the accuracy difference a user of the book would call a change of result
SETTINGS = dict(backbone="resnet50", weights="none", **schedule(EPOCHS))


@dataclass(frozen=True)
class Study:
    """One equivalence study: where its runs go, the preset and settings on top, seeds, folds (None: every
    fold), the synthetic draw and the device. The default is this script's; ``make gpu-check`` runs one at
    the paper's shapes on a GPU."""
    results: Path = RESULTS
    preset: str = "quick"
    settings: tuple = tuple(SETTINGS.items())
    seeds: tuple = tuple(SEEDS)
    folds: tuple | None = None
    draw: int = DRAW
    device: str = "cpu"


def plan(precision: str, study: Study = Study()):
    return make_plan("synthetic", study.preset, results=str(study.results / precision), data_root=str(ROOT / "data"),
                     seeds=list(study.seeds), folds=list(study.folds) if study.folds else None,
                     synthetic_draw=study.draw, device=study.device, checkpoint_seconds=1e9, precision=precision,
                     **dict(study.settings))


def runs(precision: str | None = None, study: Study = Study()):
    return [r for p in ([precision] if precision else PRECISIONS) for r in plan(p, study).main_runs(schemes=[SCHEME])]


def train(workers: int, study: Study = Study()) -> None:
    train_runs(lambda: runs(study=study), workers, __file__, f"{study.results}/fp32 (and .../bf16)")


def measure(study: Study = Study(), workers: int = 1) -> dict:
    """Train the study's runs where missing, and compare them (:func:`compare`)."""
    train(workers, study)
    return compare([run_record(r) for r in runs(study=study)])


def run_record(run) -> dict:
    """What the comparison reads of one finished run."""
    summary = json.loads((run.directory / "summary.json").read_text())
    metrics = read_metrics(run.directory)
    out = torch.load(run.directory / "outputs.pt", map_location="cpu")
    cfg = run.config.resolved()
    test_supcon = supcon_loss(out["projection"].float(), out["labels"], cfg.optim.temperature,
                              form=cfg.optim.supcon_form, no_positive=cfg.optim.no_positive)
    return dict(fold=cfg.run.test_fold, seed=cfg.run.seed, precision=cfg.run.precision,
                final=100 * summary["final"]["test_acc"], best=100 * summary["best_on_test"]["test_acc"],
                curve=[100 * m["test_acc"] for m in metrics], train_loss=float(metrics[-1]["train_loss"]),
                test_supcon=float(test_supcon), seconds=float(sum(m["seconds"] for m in metrics)))


def _interval(diffs: list[float], ratio: float) -> dict:
    i = fold_interval(diffs, ratio=ratio)
    return dict(effect=i.effect, low=i.low_nb, high=i.high_nb, sd=i.sd, n=i.n)


def compare(records: list[dict]) -> dict:
    """bf16 minus fp32 per fold (seeds averaged), with the fold-level interval; the seed-to-seed spread."""
    by = {(r["precision"], r["fold"], r["seed"]): r for r in records}
    folds = sorted({r["fold"] for r in records})
    seeds = sorted({r["seed"] for r in records})
    ratio = 1 / (len(folds) - 1)
    out = {}
    for key in ("final", "best", "train_loss", "test_supcon"):
        fold_diffs = [statistics.mean(by["bf16", f, s][key] - by["fp32", f, s][key] for s in seeds) for f in folds]
        paired = [by["bf16", f, s][key] - by["fp32", f, s][key] for f in folds for s in seeds]
        seed_to_seed = [by[p, f, seeds[0]][key] - by[p, f, seeds[1]][key] for p in PRECISIONS for f in folds]
        out[key] = dict(fp32=statistics.mean(by["fp32", f, s][key] for f in folds for s in seeds),
                        bf16=statistics.mean(by["bf16", f, s][key] for f in folds for s in seeds),
                        interval=_interval(fold_diffs, ratio),
                        sd_same_seed=statistics.stdev(paired),
                        sd_seed_to_seed=statistics.stdev(seed_to_seed),
                        mean_abs_same_seed=statistics.mean(abs(d) for d in paired),
                        mean_abs_seed_to_seed=statistics.mean(abs(d) for d in seed_to_seed))
    epochs = len(records[0]["curve"])
    mean_curve = {p: [statistics.mean(by[p, f, s]["curve"][e] for f in folds for s in seeds) for e in range(epochs)]
                  for p in PRECISIONS}
    out["curves"] = dict(mean=mean_curve, max_abs_gap=max(abs(a - b) for a, b in zip(*mean_curve.values())),
                         last_quarter_gap=statistics.mean(b - a for a, b in list(zip(mean_curve["fp32"], mean_curve["bf16"]))
                                                          [3 * epochs // 4:]))
    out["seconds"] = {p: sum(by[p, f, s]["seconds"] for f in folds for s in seeds) for p in PRECISIONS}
    out["runs"] = {"folds": len(folds), "seeds": len(seeds)}
    ok = all(-TOLERANCE <= out[k]["interval"][e] <= TOLERANCE for k in ("final", "best") for e in ("low", "high"))
    within = all(out[k]["sd_same_seed"] <= 1.5 * out[k]["sd_seed_to_seed"] for k in ("final", "best"))
    out["verdict"] = dict(equivalent=ok, within_seed_spread=within, tolerance=TOLERANCE)
    return out


def _f(x: float, d: int = 2) -> str:
    return f"{x:+.{d}f}"


def section(r: dict) -> str:
    """The reproducing page's section (markdown)."""
    c = r["comparison"]
    rows = ["| quantity | fp32 | bf16 | bf16 minus fp32, corrected 95 % interval (5 folds) | SD of bf16 minus fp32, same seed "
            "| SD of seed 0 minus seed 1, same precision |", "|---|---|---|---|---|---|"]
    names = {"final": "final-epoch accuracy (%)", "best": "best-epoch accuracy on the test fold (%)",
             "train_loss": "final training loss (hybrid)", "test_supcon": "SupCon loss of the test fold's projections"}
    for key, name in names.items():
        q, i = c[key], c[key]["interval"]
        d = 2 if "accuracy" in name else 3
        rows.append(f"| {name} | {q['fp32']:.{d}f} | {q['bf16']:.{d}f} | {_f(i['effect'], d)} [{_f(i['low'], d)}, "
                    f"{_f(i['high'], d)}] | {q['sd_same_seed']:.{d}f} | {q['sd_seed_to_seed']:.{d}f} |")
    v = c["verdict"]
    f = c["final"]
    half = (f["interval"]["high"] - f["interval"]["low"]) / 2
    if v["equivalent"] and v["within_seed_spread"]:
        verdict = (f"bf16 trains as well as fp32 here: both accuracy intervals lie inside +-{v['tolerance']:g} points, "
                   "and changing the precision moves a run no further than changing its seed does")
    elif v["within_seed_spread"] and f["interval"]["low"] <= 0 <= f["interval"]["high"]:
        verdict = (f"changing the precision moves a run no further than changing its seed does (SD {f['sd_same_seed']:.1f} "
                   f"against {f['sd_seed_to_seed']:.1f} points), and the mean losses differ by a few hundredths; but this "
                   f"design cannot confirm that bf16 is within +-{v['tolerance']:g} points of fp32, because these runs "
                   f"swing by {f['sd_seed_to_seed']:.0f} points from seed to seed (the interval is +-{half:.0f} points "
                   "wide)")
    else:
        verdict = ("bf16 is not shown to train as well as fp32 here: " +
                   ("it moves a run further than a change of seed does" if not v["within_seed_spread"] else
                    "its accuracy interval lies away from zero"))
    s = r["settings"]
    speed = r["comparison"]["seconds"]
    return "\n".join([
        MARKERS[0],
        "### Does bf16 train as well as fp32?",
        "",
        f"On CUDA the default precision (`precision=\"auto\"`) trains in bf16 autocast. Whether that changes a result "
        f"was measured by training the same runs twice, in fp32 and in bf16, on a CPU whose AMX units do real bf16 "
        f"arithmetic (`studies/bf16_training.py`, {r['date']}): ResNet-50 from random initialisation, the hybrid "
        f"scheme, the quick preset's inputs (32 mel bands x 79 frames), {s['epochs']} epochs, five test folds of the "
        f"tuning draw, seeds {', '.join(map(str, SEEDS))}; each pair shares its seed, so its initial weights, clip "
        "order and augmentation draws are the same and only the arithmetic differs.",
        "",
        *rows,
        "",
        f"The mean test-accuracy curves of the two precisions differ by at most {c['curves']['max_abs_gap']:.2f} points "
        f"at any epoch (over the last quarter of training, bf16 minus fp32 averages "
        f"{_f(c['curves']['last_quarter_gap'])}). Verdict: {verdict}. ResNet-50 from random weights on 320 training "
        f"clips is far from converged after {s['epochs']} epochs, which is what makes it so noisy; the same comparison "
        "at the paper's shapes on a GPU is a row of `make gpu-check`. The default stays bf16 autocast on CUDA "
        "(`precision=\"fp32\"` turns it off): nothing here shows bf16 training worse (its mean accuracy is "
        f"{_f(f['bf16'] - f['fp32'])} points from fp32's), and on a GPU it is what makes the paper's grids affordable. "
        f"On a CPU the default stays fp32 (bf16 was only {speed['fp32'] / speed['bf16']:.2f} times as fast here).",
        "",
        "A one-batch gradient at initialisation says little about this: there, ResNet-50's encoder gradient in bf16 "
        "has a cosine of 0.2-0.3 with fp32's, but two fp32 memory layouts (two summation orders) already disagree "
        "(0.93), and centring the input makes the bf16 cosine smaller, not larger. A randomly initialised ResNet-50 "
        "is chaotic at its first step, so any rounding, bf16's or fp32's, moves its gradient; whether training "
        "inherits that is what the table measures, and on the losses it does not.",
        MARKERS[1]])


def main() -> int:
    args = study_args(__doc__, runs)
    if args is None:
        return 0
    if not args.report:
        train(args.workers)
    unfinished = [r for r in runs() if not r.finished]
    if unfinished:
        raise SystemExit(f"{len(unfinished)} runs are unfinished: run without --report")
    records = [run_record(r) for r in runs()]
    result = dict(date=time.strftime("%Y-%m-%d"), settings=dict(SETTINGS, scheme=SCHEME, seeds=SEEDS, draw=DRAW,
                                                                  preset="quick", dataset="synthetic"),
                  runs=[{k: v for k, v in r.items() if k != "curve"} for r in records],
                  comparison=compare(records))
    save(OUT_JSON, result, PAGE, MARKERS, section(result), report=args.report)
    c = result["comparison"]
    for key in ("final", "best", "train_loss", "test_supcon"):
        i = c[key]["interval"]
        print(f"{key}: fp32 {c[key]['fp32']:.3f}, bf16 {c[key]['bf16']:.3f}, bf16 - fp32 {i['effect']:+.3f} "
              f"[{i['low']:+.3f}, {i['high']:+.3f}]; sd same seed {c[key]['sd_same_seed']:.3f}, "
              f"seed to seed {c[key]['sd_seed_to_seed']:.3f}")
    print("verdict:", c["verdict"], "seconds:", c["seconds"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
