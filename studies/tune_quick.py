"""How the `quick` preset's training settings were chosen: on the tuning draw, never on a clip the book tests.

    .venv/bin/python studies/tune_quick.py            # about 15 min on a 2-core CPU (2 workers)
    .venv/bin/python studies/tune_quick.py --report   # only rewrite the page from the runs already there

Writes ``studies/tune_quick.json`` (every number) and ``book/tuning.md`` (the book's page that
cites them). Runs land in ``results/tuning/synthetic/<stage>/`` and are reused when the script
runs again.

The tuning draw: the synthetic dataset generated with another seed (the setting
``synthetic_draw=1``, in ``data/synthetic-draw1/``). It has the book's layout (the same classes,
folds and sizes) but not one of its clips, so nothing the book tests on, test folds included,
has been seen by the choice of settings. Within the draw:

- Splits: for each test fold t = 1..5 of the draw the validation fold is the next one (5 -> 1);
  a run trains on the other three folds. A candidate's score is the mean, over the five splits,
  of the *final* epoch's validation accuracy. Nothing reads the draw's test-fold numbers.
- Epochs are counted as in the book: a book run trains on four folds, a study run on three, so a
  study run of "E book epochs" trains round(4/3 E) epochs (the same steps), with the same
  schedule shape (linear warm-up over a tenth of the epochs, then exponential decay to 5 % of the
  peak rate at the last epoch, the released code's form).
- Fixed by the CPU budget, not searched: 8 kHz, 256-sample windows and hops (79 frames for
  2.5 s), 32 mel bands, the `tiny` backbone with one channel, batch 32, masks of the paper's
  relative widths (F = 8 of 32 bands, T = 6 of 79 frames). Not searched either, the paper's own
  values: temperature 0.05, alpha 0.5.
- Stage A, augmentation (cross-entropy, lr 0.01, 40 book epochs): no masks, or the paper's
  masks (f = 2, t = 1) filled with 0 dB (the paper), the floor (silence) or the clip's mean.
- Stage B, the learning rate (cross-entropy, stage A's choice, 40 book epochs).
- Stage C, one schedule for every scheme (the paper: "the same hyperparameters in training the
  baseline, models with supervised contrastive loss, and the hybrid loss"): each scheme at E and
  at 2E book epochs; the shortest E at which every scheme has converged (its mean final
  validation accuracy moves by less than MOVE points when its training doubles, and every run
  passes ``soundclr.analysis.convergence.convergence``). The two-stage scheme's stage 2 is as long as stage 1.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from soundclr.config import PRESETS, preset  # noqa: E402
from soundclr.schemes import PAPER_SCHEMES as SCHEMES  # noqa: E402

sys.path.insert(0, str(ROOT / "studies"))
from common import FINAL_RATE  # noqa: E402  (the last epoch runs at 5 % of the peak rate)
from common import schedule as common_schedule  # noqa: E402
from soundclr.runs.pool import train_in_processes, work  # noqa: E402
from soundclr.runs.store import (
    Run,
    run_dir,  # noqa: E402
)
from soundclr.train.record import read_metrics

RESULTS = ROOT / "results" / "tuning"
OUT_JSON = ROOT / "studies" / "tune_quick.json"
OUT_PAGE = ROOT / "book" / "tuning.md"
SPLITS = [(t, t % 5 + 1) for t in range(1, 6)]          # (test fold, validation fold) of the tuning draw
STEP_MATCH = 4 / 3                                       # book runs train on 4 folds, study runs on 3
BUDGET_EPOCHS = 80                                       # what `make book` affords on 2 cores (book epochs, every scheme)
MOVE = 2.0                                               # points: "converged" when doubling the training moves less
TUNING_DRAW = 1
# What the study searches (the quick preset's values of these are its output: a test checks them); every
# other setting of the quick preset is the study's too, read from the preset itself.
SEARCHED = {"lr", "freq_masks", "time_masks", "mask_fill", "epochs", "warmup_epochs", "gamma", "stage2_epochs",
            "stage2_gamma"}
BASE = {**{k: v for k, v in PRESETS["quick"].items() if k not in SEARCHED},
        "dataset": "synthetic", "synthetic_draw": TUNING_DRAW, "data_root": str(ROOT / "data"),
        "checkpoint_seconds": 1e9, "device": "cpu"}
AUGMENT = {"none": dict(freq_masks=0, time_masks=0),
           "paper-zero": dict(freq_masks=2, time_masks=1, mask_fill="zero"),
           "paper-min": dict(freq_masks=2, time_masks=1, mask_fill="min"),
           "paper-mean": dict(freq_masks=2, time_masks=1, mask_fill="mean")}
AUGMENT_LABEL = {"none": "no masks", "paper-zero": "f = 2, t = 1, filled with 0 dB (the paper)",
                 "paper-min": "f = 2, t = 1, filled with the floor (silence)",
                 "paper-mean": "f = 2, t = 1, filled with the clip's mean"}
A_LR, A_EPOCHS = 1e-2, 40
LRS = (5e-3, 1e-2, 2e-2)
LENGTHS = (40, 80, 160)                                  # stage C: E, tried in order (2E trained beside each)


def schedule(epochs: int) -> dict:
    """The book's schedule for ``epochs`` book epochs (:func:`common.schedule`: warm-up over a tenth, decay to
    FINAL_RATE at the last epoch); stage 2 of the two-stage scheme as long as stage 1 (the paper: 800 and 800)."""
    s = common_schedule(epochs)
    return dict(s, stage2_epochs=epochs, stage2_gamma=s["gamma"])


def study_schedule(book_epochs: float) -> dict:
    """The same schedule for a study run: STEP_MATCH times the epochs (the same number of steps)."""
    return schedule(round(book_epochs * STEP_MATCH))


def config(scheme: str, split, **settings):
    cfg = preset("paper", **BASE).override(**settings)
    return cfg.override(scheme=scheme, test_fold=split[0], val_fold=split[1], seed=0)


def runs_for(stage: str, chosen: dict | None = None) -> list[Run]:
    out = []

    def add(name, scheme, **settings):
        for split in SPLITS:
            c = config(scheme, split, **settings)
            out.append(Run(c, run_dir(RESULTS, stage, c, name), name))

    ch = chosen or {}
    if stage == "A":
        for name, aug in AUGMENT.items():
            add(name, "ce", lr=A_LR, **aug, **study_schedule(A_EPOCHS))
    elif stage == "B":
        for lr in LRS:
            add(f"lr{lr:g}", "ce", lr=lr, **AUGMENT[ch["augment"]], **study_schedule(A_EPOCHS))
    elif stage.startswith("C"):      # C40, C80, ...: every scheme at E and 2E
        e = int(stage[1:])
        for factor in (1, 2):
            for scheme in SCHEMES:
                add(f"{scheme}-e{factor * e}", scheme, lr=ch["lr"], **AUGMENT[ch["augment"]], **study_schedule(factor * e))
    return out


def final_val(run: Run) -> float | None:
    """The last epoch's validation accuracy (the study reads nothing else of a run's accuracy)."""
    rows = read_metrics(run.directory) if run.directory.exists() else []
    vals = [r["val_acc"] for r in rows if r.get("val_acc") is not None]
    return 100 * vals[-1] if vals else None


def score(runs: list[Run]) -> dict[str, dict]:
    by: dict[str, list] = {}
    for r in runs:
        by.setdefault(r.variant, []).append(final_val(r))
    out = {}
    for name, vals in by.items():
        vals = [v for v in vals if v is not None]
        out[name] = {"mean": statistics.fmean(vals) if vals else math.nan,
                     "sd": statistics.stdev(vals) if len(vals) > 1 else math.nan, "n": len(vals), "values": vals}
    return out


def train(stage: str, chosen: dict | None, workers: int) -> None:
    runs = runs_for(stage, chosen)
    if all(r.finished for r in runs):
        return
    cmd = [sys.executable, __file__, "--worker", stage, "--chosen", json.dumps(chosen or {})]
    t0 = time.time()
    print(f"stage {stage}: training {len(runs)} runs (progress: soundclr status --results {RESULTS})", flush=True)
    for _ in range(3):   # a run held by a worker that died is taken over once its lease is stale
        if workers == 1:
            work(runs, verbose=False, log=None)
        else:
            train_in_processes(cmd, workers, runs[0].config)
        if all(r.finished for r in runs):
            break
        time.sleep(5)
    missing = [r.directory.name for r in runs if not r.finished]
    if missing:
        raise SystemExit(f"stage {stage}: {len(missing)} runs did not finish ({missing[:3]} ...): see soundclr status")
    print(f"stage {stage}: {len(runs)} runs in {time.time() - t0:.0f} s; validation scores: "
          + ", ".join(f"{k} {v['mean']:.1f}" for k, v in score(runs).items()), flush=True)


def convergence_of(runs: list[Run]) -> dict[str, dict]:
    """Per variant: the study's score and how many runs pass the book's convergence test (read on
    the validation fold, the only accuracy the study reads)."""
    from soundclr.analysis.convergence import convergence
    out = {}
    for name, sc in score(runs).items():
        sel = [r for r in runs if r.variant == name]
        conv = [convergence([{**m, "test_acc": m.get("val_acc")} for m in read_metrics(r.directory)],
                            n_test=_n_val(r)) for r in sel]
        out[name] = {**sc, "converged": sum(x.converged for x in conv),
                     "reasons": sorted({why for x in conv for why in x.reasons})[:5]}
    return out


def _n_val(run: Run) -> int:
    """Clips in a study run's validation fold (the draw has the book's sizes: 10 classes x 8 clips)."""
    summary = json.loads((run.directory / "summary.json").read_text())
    return sum(map(sum, summary["confusion"]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--report", action="store_true", help="only write the page and the json from finished runs")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--chosen", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        work(runs_for(args.worker, json.loads(args.chosen) or None), verbose=False, log=None)
        return 0
    t0 = time.time()
    step = _require_finished if args.report else (lambda stage, chosen: train(stage, chosen, args.workers))

    step("A", None)
    a = score(runs_for("A"))
    chosen = {"augment": max(a, key=lambda k: a[k]["mean"])}
    step("B", chosen)
    b = score(runs_for("B", chosen))
    best_lr = max(b, key=lambda k: b[k]["mean"])
    chosen["lr"] = float(best_lr[2:])
    c, moves, chosen_e = {}, {}, None
    for e in LENGTHS:
        if e > BUDGET_EPOCHS:
            break
        step(f"C{e}", chosen)
        c[e] = convergence_of(runs_for(f"C{e}", chosen))
        moves[e] = {s: c[e][f"{s}-e{2 * e}"]["mean"] - c[e][f"{s}-e{e}"]["mean"] for s in SCHEMES}
        ok = all(abs(moves[e][s]) < MOVE and c[e][f"{s}-e{e}"]["converged"] == c[e][f"{s}-e{e}"]["n"] for s in SCHEMES)
        if ok:
            chosen_e, rule = e, f"the shortest length at which every scheme converges: each moves by less than {MOVE:g} points"
            break
    if chosen_e is None:
        chosen_e = max(c)
        rule = (f"no length within the budget ({BUDGET_EPOCHS} book epochs) converged by the rule for every scheme: "
                "the longest affordable one")
    chosen.update(epochs=chosen_e, epochs_rule=rule)
    settings = {"lr": chosen["lr"], **AUGMENT[chosen["augment"]], **schedule(chosen_e)}
    settings.setdefault("mask_fill", "zero")
    summaries = [json.loads(p.read_text()) for p in (RESULTS / "synthetic").glob("*/*/summary.json")]
    seconds = round(time.time() - t0)
    if args.report and OUT_JSON.exists():     # a page rewrite trains nothing: keep the study's own wall time
        seconds = json.loads(OUT_JSON.read_text()).get("seconds", seconds)
    result = {"date": time.strftime("%Y-%m-%d"), "seconds": seconds, "base": BASE,
              "tuning_draw": TUNING_DRAW,
              "schedule_rule": f"warm-up over a tenth of the epochs, then decay to {FINAL_RATE:g} of the peak rate "
                               "at the last epoch", "budget_epochs": BUDGET_EPOCHS, "step_match": STEP_MATCH,
              "splits": SPLITS, "A": a, "B": b, "C": {str(k): v for k, v in c.items()},
              "moves": {str(k): v for k, v in moves.items()}, "chosen": chosen, "chosen_settings": settings,
              "n_runs": len(summaries), "run_seconds": round(sum(s["seconds"] for s in summaries))}
    OUT_JSON.write_text(json.dumps(result, indent=1) + "\n")
    write_page(result)
    print(json.dumps(settings), flush=True)
    return 0


def _require_finished(stage: str, chosen: dict | None) -> None:
    missing = [r for r in runs_for(stage, chosen) if not r.finished]
    if missing:
        raise SystemExit(f"--report: stage {stage} has {len(missing)} unfinished runs (e.g. {missing[0].directory}): "
                         "run the study without --report to train them")


def _cell(s: dict, bold: bool = False) -> str:
    text = f"{s['mean']:.1f} ± {s['sd']:.1f}" if not math.isnan(s.get("sd", math.nan)) else f"{s['mean']:.1f}"
    return f"**{text}**" if bold else text


def write_page(r: dict) -> None:
    a, b, c, ch = r["A"], r["B"], r["C"], r["chosen"]
    label = {"ce": "Cross-entropy", "supcon": "SupCon, two stages", "hybrid": "Hybrid (SoundCLR)"}
    rows_a = ["| masks | validation accuracy (%) |", "|---|---|"] + [
        f"| {AUGMENT_LABEL[k]} | {_cell(a[k], k == ch['augment'])} |" for k in AUGMENT]
    rows_b = ["| learning rate | validation accuracy (%) |", "|---|---|"] + [
        f"| {lr:g} | {_cell(b[f'lr{lr:g}'], lr == ch['lr'])} |" for lr in LRS]
    rows_c = ["| scheme | E (book epochs) | at E (%) | at 2E (%) | change (points) | runs converged at E |",
              "|---|---|---|---|---|---|"]
    for e, cc in c.items():
        e = int(e)
        for s in SCHEMES:
            one, two, m = cc[f"{s}-e{e}"], cc[f"{s}-e{2 * e}"], r["moves"][str(e)][s]
            mark = "**" if abs(m) >= MOVE else ""
            rows_c.append(f"| {label[s]} | {e} | {_cell(one)} | {_cell(two)} | {mark}{m:+.1f}{mark} | "
                          f"{one['converged']}/{one['n']} |")
    minutes = r["run_seconds"] / 60
    page = f"""# How the quick preset was chosen

**Which settings does the offline default use, why, and do its runs really converge?** The
`quick` preset trains a tiny network on the synthetic dataset within the two-core budget of
`make book`. Its training settings were chosen the way the paper chose its own (a grid search
with the cross-entropy model, then the same values for all three schemes), on data the book
never tests on: **the tuning draw**, a second synthetic dataset generated with another seed
(`synthetic_draw = {r['tuning_draw']}`). It has the book's classes, folds and sizes but none of
its clips. Within the draw, for each fold $t = 1..5$ the next fold validates and the other three
train; a candidate's score is the mean over the five splits of the *final* epoch's validation
accuracy (in %, ± the standard deviation over the splits). The study is the script
`studies/tune_quick.py`; this page is its output (written on {r['date']}; its {r['n_runs']} runs
train in {minutes:.0f} minutes of CPU time, about half that on two cores with two workers).
Epochs are given as the book counts them: a study run trains on three folds instead of four,
so it runs {r['step_match']:.2f} times as many epochs, the same number of steps.

Fixed by the CPU budget rather than searched: 8 kHz, 256-sample windows and hops (79 frames for
a 2.5-s clip), 32 mel bands, the `tiny` backbone with one input channel, batches of 32 clips,
masks of the paper's relative widths (F = 8 of 32 bands, T = 6 of 79 frames), and the released
code's form of schedule ({r['schedule_rule']}). Not searched either: the hybrid's weight alpha = 0.5 (the best of the paper's Table II) and the
SupCon temperature 0.05 (the released code's; the paper does not state it, see the
[differences page](differences.md)).

## Stage A: spectrogram masks (cross-entropy, as the paper's Table I)

Learning rate {A_LR:g}, {A_EPOCHS} epochs; the paper's masks (f = 2, t = 1) with each fill, or none.

{chr(10).join(rows_a)}

Chosen (bold): **{AUGMENT_LABEL[ch['augment']]}**.

## Stage B: the learning rate (cross-entropy)

{chr(10).join(rows_b)}

Chosen: **lr {ch['lr']:g}**.

## Stage C: one schedule for every scheme

The paper trains the three schemes with the same hyperparameters, and so does this book: if one
scheme needs more epochs to converge, every scheme gets them. Each scheme trains for E epochs and
for twice as many (the schedule stretched; the two-stage scheme's stage 2 is as long as its stage
1); a length is long enough when no scheme's mean moves by {MOVE:g} points or more (bold) and
every run passes the book's convergence test. Chosen: **E = {ch['epochs']} epochs** ({ch['epochs_rule']}).

{chr(10).join(rows_c)}

These are the settings of the `quick` preset (`soundclr/config.py`); a test checks that the two
agree.
"""
    OUT_PAGE.write_text(page)


if __name__ == "__main__":
    sys.exit(main())
