"""How the `quick` preset's training settings were chosen: on validation folds, never a test fold.

    .venv/bin/python studies/tune_quick.py            # about 25 min on a 2-core CPU (2 workers)
    .venv/bin/python studies/tune_quick.py --report   # only rewrite the page from the runs already there

Writes ``studies/tune_quick.json`` (every number) and ``book/tuning.md`` (the book's page that
cites them). Runs land in ``results/tuning/synthetic/<stage>/`` and are reused when the script
runs again.

The protocol follows the paper (a grid search with the cross-entropy model; the same values for
all three schemes), with a validation fold instead of the test fold:

- Splits: for each test fold t = 1..5 the validation fold is the next one (5 -> 1); a run trains
  on the other three folds. A candidate's score is the mean, over the five splits, of the *final*
  epoch's validation accuracy. The study reads no test-fold number (workers run quietly: their
  progress lines would print test accuracies).
- Epochs are counted as in the book: a book run trains on four folds, a study run on three, so a
  study run of "E book epochs" trains round(4/3 E) epochs, with the same steps and the same
  schedule shape (linear warm-up over a tenth of the epochs, then exponential decay to 5 % of the
  peak rate at the last epoch, the released code's form).
- Fixed by the CPU budget, not searched: 8 kHz, 256-sample windows and hops (79 frames for
  2.5 s), 32 mel bands, the `tiny` backbone with one channel, batch 32, masks of the paper's
  relative widths (F = 8 of 32 bands, T = 6 of 79 frames).
- Stage A1, masks (as the paper's Table I): f in {0, 1, 2} x t in {0, 1}, cross-entropy.
- Stage A2, learning rate x epochs, cross-entropy, with stage A1's masks; the most accurate
  candidate that `make book` affords (at most BUDGET_EPOCHS).
- Stage B, the length of the contrastive stages and the SupCon temperature (cross-entropy
  cannot choose either): the hybrid, the paper's model, at each temperature and each length k
  (the setting contrastive_stretch: the hybrid's training and the two-stage scheme's stage 1
  run k x E epochs), trained for its length and for twice that; the shortest k at which a
  temperature converges (its mean moves by less than 2 points), and there the most accurate
  converging temperature. The two-stage scheme uses the same values, as in the paper.
- Stage C, convergence: every scheme at its length and at twice it (the schedule stretched),
  5 splits x 2 seeds; each scheme's mean final validation accuracy must move by less than 2
  points.
- Stage D, why: the tiny network's design (plain vs pooled-centred) at the chosen settings; a
  linear probe on the frozen representation h against each model's own classifier; the
  gradients of the hybrid's two terms along one run.
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

from soundclr import preset  # noqa: E402
from soundclr.experiment import Run, run_grid  # noqa: E402
from soundclr.store import read_metrics, run_dir  # noqa: E402

RESULTS = ROOT / "results" / "tuning"
OUT_JSON = ROOT / "studies" / "tune_quick.json"
OUT_PAGE = ROOT / "book" / "tuning.md"
SPLITS = [(t, t % 5 + 1) for t in range(1, 6)]          # (test fold, validation fold)
STEP_MATCH = 4 / 3                                       # book runs train on 4 folds, study runs on 3
FINAL_RATE = 0.05                                        # the last epoch runs at 5 % of the peak rate
BUDGET_EPOCHS = 40                                       # what `make book` affords on 2 cores (book epochs)
BASE = dict(dataset="synthetic", data_root=str(ROOT / "data"), sample_rate=8000, n_fft=256, hop_length=256, n_mels=32,
            channels=1, freq_mask_width=8, time_mask_width=6, backbone="tiny", weights="none", batch_size=32,
            stage2_start="final", stage2_lr=None, checkpoint_seconds=1e9, device="cpu")
MASKS = [(f, t) for f in (0, 1, 2) for t in (0, 1)]
LRS = (5e-3, 1e-2, 2e-2)
EPOCHS = (30, 40, 50)
TEMPERATURES = (0.05, 0.1, 0.2)
STRETCHES = (1, 2)                                       # contrastive_stretch candidates
A1_LR, A1_EPOCHS = 1e-2, 40


def schedule(epochs: int) -> dict:
    """The book's schedule for ``epochs`` book epochs: warm-up over a tenth, decay to FINAL_RATE at the
    last epoch; stage 2 of the two-stage scheme as long as stage 1 (the paper: 800 and 800)."""
    warm = max(1, round(epochs / 10))
    return dict(epochs=epochs, warmup_epochs=warm, gamma=FINAL_RATE ** (1 / max(1, epochs - 1 - warm)),
                stage2_epochs=epochs, stage2_gamma=FINAL_RATE ** (1 / max(1, epochs - 1 - warm)))


def study_schedule(book_epochs: float) -> dict:
    """The same schedule for a study run: STEP_MATCH times the epochs (the same number of steps)."""
    return schedule(round(book_epochs * STEP_MATCH))


# Values some runs do not set (cross-entropy uses neither), pinned so that a run's identity never follows
# the `quick` preset this study chooses: the runs found again by a later invocation are the same runs.
UNSEARCHED = dict(temperature=0.1, contrastive_stretch=2.0)


def config(scheme: str, split, seed: int, **settings):
    cfg = preset("quick", **BASE, **UNSEARCHED).override(**settings)
    return cfg.override(scheme=scheme, test_fold=split[0], val_fold=split[1], seed=seed)


def runs_for(stage: str, chosen: dict | None = None) -> list[Run]:
    out = []

    def add(name, scheme, seeds=(0,), **settings):
        for seed in seeds:
            for split in SPLITS:
                c = config(scheme, split, seed, **settings)
                out.append(Run(c, run_dir(RESULTS, stage, c, name), name))

    ch = chosen or {}
    if stage == "A1":
        for f, t in MASKS:
            add(f"f{f}t{t}", "ce", lr=A1_LR, freq_masks=f, time_masks=t, **study_schedule(A1_EPOCHS))
    elif stage == "A2":
        for e in EPOCHS:
            for lr in LRS:
                add(f"lr{lr:g}-e{e}", "ce", lr=lr, **ch["masks"], **study_schedule(e))
    elif stage == "B":
        # the temperature, at each length k of the contrastive stage: k x E and 2k x E epochs
        for k in STRETCHES:
            for tau in TEMPERATURES:
                for factor in (1, 2):
                    add(f"tau{tau:g}-k{k}-x{factor}", "hybrid", seeds=(0, 1), lr=ch["lr"], temperature=tau,
                        contrastive_stretch=float(k), **ch["masks"], **study_schedule(factor * ch["epochs"]))
    elif stage == "C":
        for factor in (1, 2):
            common = dict(lr=ch["lr"], temperature=ch["temperature"], **ch["masks"], **study_schedule(factor * ch["epochs"]))
            add(f"ce-x{factor}", "ce", seeds=(0, 1), **common)
            for k in STRETCHES:
                add(f"hybrid-k{k}-x{factor}", "hybrid", seeds=(0, 1), contrastive_stretch=float(k), **common)
                add(f"supcon-k{k}-x{factor}", "supcon", seeds=(0, 1), contrastive_stretch=float(k), **common)
    elif stage == "D":
        common = dict(lr=ch["lr"], temperature=ch["temperature"], contrastive_stretch=ch["contrastive_stretch"],
                      **ch["masks"], **study_schedule(ch["epochs"]))
        for scheme in ("ce", "hybrid"):
            add(f"{scheme}-plain", scheme, tiny_design="plain", **common)
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
    from soundclr.data import load_bank
    from soundclr.worker import run_workers
    load_bank(runs[0].config, progress=True)
    cmd = [sys.executable, __file__, "--worker", stage, "--chosen", json.dumps(chosen or {})]
    t0 = time.time()
    print(f"stage {stage}: training {len(runs)} runs (progress: soundclr status --results {RESULTS})", flush=True)
    for _ in range(3):   # a run held by a worker that died is taken over once its claim is stale
        if workers == 1:
            run_grid(runs, progress=False, verbose=False)
        else:
            run_workers(cmd, workers)
        if all(r.finished for r in runs):
            break
        time.sleep(5)
    missing = [r.directory.name for r in runs if not r.finished]
    if missing:
        raise SystemExit(f"stage {stage}: {len(missing)} runs did not finish ({missing[:3]} ...): see soundclr status")
    print(f"stage {stage}: {len(runs)} runs in {time.time() - t0:.0f} s; validation scores: "
          + ", ".join(f"{k} {v['mean']:.1f}" for k, v in score(runs).items()), flush=True)


def probe(run: Run) -> dict:
    """A logistic-regression probe on a finished run's frozen h (fit on its training folds, scored on
    its validation fold), its own classifier's validation accuracy, and its classifier's weight norm."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from soundclr.augment import Pipeline
    from soundclr.data import load_bank
    from soundclr.experiment import load_model
    cfg = run.config.resolved()
    bank = load_bank(cfg, progress=False)
    split = bank.split(cfg.run.test_fold, cfg.run.val_fold)
    model = load_model(run.directory)
    pipe = Pipeline.from_config(cfg).eval()

    def embed(idx):
        with torch.no_grad():
            w, l = bank.batch(idx)
            out = model(pipe(w, l))
        return out.representation.numpy(), out.logits.argmax(1).numpy(), bank.labels[idx].numpy()

    h_train, _, y_train = embed(split.train)
    h_val, pred_val, y_val = embed(split.val)
    clf = LogisticRegression(C=10.0, max_iter=5000).fit(h_train, y_train)
    return {"probe": 100 * float((clf.predict(h_val) == y_val).mean()), "own": 100 * float((pred_val == y_val).mean()),
            "weight_norm": float(model.classifier.weight.detach().norm(dim=1).mean())}


def gradients(chosen: dict) -> list[dict]:
    """Along one hybrid run (split 1, seed 0, the chosen settings): the norms of the SupCon and the
    cross-entropy gradients on the encoder, and the cosine between them, at four epochs."""
    import torch

    from soundclr.augment import Pipeline
    from soundclr.data import load_bank
    from soundclr.losses import cross_entropy_loss, supcon_loss
    from soundclr.model import build_model
    from soundclr.train import lr_factor, make_optimizer
    cfg = config("hybrid", SPLITS[0], 0, lr=chosen["lr"], temperature=chosen["temperature"], **chosen["masks"],
                 contrastive_stretch=chosen["contrastive_stretch"], **study_schedule(chosen["epochs"])).resolved()
    bank = load_bank(cfg, progress=False)
    split = bank.split(cfg.run.test_fold, cfg.run.val_fold)
    torch.manual_seed(0)
    model = build_model(cfg, bank.n_classes)
    pipe = Pipeline.from_config(cfg).train()
    opt = make_optimizer(cfg, model.parameters(), cfg.optim.lr)
    encoder = [p for n, p in model.named_parameters() if n.startswith("encoder.")]
    gen = torch.Generator().manual_seed(0)
    o, out = cfg.optim, []
    sched = cfg.stages()[0]
    marks = {0, sched["epochs"] // 4, sched["epochs"] // 2, sched["epochs"] - 1}
    for epoch in range(sched["epochs"]):
        for g in opt.param_groups:
            g["lr"] = o.lr * lr_factor(epoch, sched["warmup"], sched["gamma"])
        order = split.train[torch.randperm(len(split.train), generator=gen)]
        for step in range(len(order) // o.batch_size):
            idx = order[step * o.batch_size:(step + 1) * o.batch_size]
            w, l = bank.batch(idx)
            labels = bank.labels[idx]
            with torch.no_grad():
                x = pipe(w, l)
            res = model(x)
            ce = cross_entropy_loss(res.logits, labels)
            sc = supcon_loss(res.projection, labels, o.temperature)
            if step == 0 and epoch in marks:
                g_ce = torch.autograd.grad(ce, encoder, retain_graph=True)
                g_sc = torch.autograd.grad(sc, encoder, retain_graph=True)
                n_ce = torch.sqrt(sum((g ** 2).sum() for g in g_ce))
                n_sc = torch.sqrt(sum((g ** 2).sum() for g in g_sc))
                cos = sum((a * b).sum() for a, b in zip(g_ce, g_sc)) / (n_ce * n_sc)
                out.append({"epoch": epoch + 1, "ratio": float(n_sc / n_ce), "cosine": float(cos)})
            loss = o.alpha * sc + (1 - o.alpha) * ce
            opt.zero_grad()
            loss.backward()
            opt.step()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--report", action="store_true", help="only write the page and the json from finished runs")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--chosen", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        import signal

        from soundclr.cli import _raise_terminated
        signal.signal(signal.SIGTERM, _raise_terminated)   # stopped: release the claim, the run resumes later
        run_grid(runs_for(args.worker, json.loads(args.chosen) or None), progress=False, verbose=False)
        return 0
    from soundclr.synthetic import ensure_synthetic
    ensure_synthetic(ROOT / "data" / "synthetic")
    t0 = time.time()
    step = _require_finished if args.report else (lambda stage, chosen: train(stage, chosen, args.workers))

    step("A1", None)
    a1 = score(runs_for("A1"))
    best_mask = max(a1, key=lambda k: a1[k]["mean"])
    chosen = {"masks": {"freq_masks": int(best_mask[1]), "time_masks": int(best_mask[3])}, "mask_candidate": best_mask}
    step("A2", chosen)
    a2 = score(runs_for("A2", chosen))
    affordable = {k: v for k, v in a2.items() if int(k.split("-e")[1]) <= BUDGET_EPOCHS}
    best = max(affordable, key=lambda k: affordable[k]["mean"])
    chosen.update(lr=float(best.split("-e")[0][2:]), epochs=int(best.split("-e")[1]), candidate=best)
    step("B", chosen)
    b = score(runs_for("B", chosen))
    # The shortest contrastive stage k at which some temperature lets the hybrid converge (its mean
    # moves by less than 2 points when the training doubles); at that k, the most accurate such
    # temperature. If none converges at any k, the longest k and the temperature that moves least.
    moves_b = {(k, t): b[f"tau{t:g}-k{k}-x2"]["mean"] - b[f"tau{t:g}-k{k}-x1"]["mean"]
               for k in STRETCHES for t in TEMPERATURES}
    ok = [(k, t) for (k, t), m in moves_b.items() if abs(m) < 2]
    if ok:
        k = min(k for k, _ in ok)
        tau = max((t for kk, t in ok if kk == k), key=lambda t: b[f"tau{t:g}-k{k}-x1"]["mean"])
        rule = "the shortest length at which a temperature converges, and there the most accurate converging one"
    else:
        k = max(STRETCHES)
        tau = min(TEMPERATURES, key=lambda t: abs(moves_b[(k, t)]))
        rule = "none converged: the longest length, and the temperature that moves least"
    chosen.update(contrastive_stretch=float(k), temperature=tau, temperature_rule=rule)
    result_b = {"scores": b, "moves": {f"{t:g}-k{k}": m for (k, t), m in moves_b.items()}}
    step("C", chosen)
    from soundclr.claims import convergence
    c_runs = runs_for("C", chosen)
    c = {}
    for name in sorted({r.variant for r in c_runs}):
        sel = [r for r in c_runs if r.variant == name]
        conv = [convergence([{**m, "test_acc": m.get("val_acc")} for m in read_metrics(r.directory)]) for r in sel]
        sc = score(sel)[name]
        c[name] = {**sc, "converged": sum(x.converged for x in conv),
                   "reasons": sorted({why for x in conv for why in x.reasons})[:5]}
    moves = {key: c[f"{key}-x2"]["mean"] - c[f"{key}-x1"]["mean"]
             for key in ["ce"] + [f"{s}-k{k}" for k in STRETCHES for s in ("hybrid", "supcon")]}
    step("D", chosen)
    d_runs = runs_for("D", chosen)
    d = {"design": score(d_runs), "probe": {}, "gradients": gradients(chosen)}
    kk = int(chosen["contrastive_stretch"])
    seed0 = {"ce": "ce-x1", "hybrid": f"hybrid-k{kk}-x1"}   # stage C's first seed: the same splits as stage D's runs
    d["pooled"] = {k: score([r for r in c_runs if r.variant == v and r.config.run.seed == 0])[v] for k, v in seed0.items()}
    for scheme in ("ce", f"hybrid-k{kk}", f"supcon-k{kk}"):
        sel = [r for r in c_runs if r.variant == f"{scheme}-x1" and r.config.run.seed == 0]
        probes = [probe(r) for r in sel]
        d["probe"][scheme.split("-")[0]] = {key: statistics.fmean(p[key] for p in probes) for key in probes[0]}
    settings = {"lr": chosen["lr"], "temperature": chosen["temperature"], **chosen["masks"],
                "contrastive_stretch": chosen["contrastive_stretch"], **schedule(chosen["epochs"])}
    result = {"date": time.strftime("%Y-%m-%d"), "seconds": round(time.time() - t0), "base": BASE,
              "schedule_rule": f"warm-up over a tenth of the epochs, then decay to {FINAL_RATE:g} of the peak rate "
                               "at the last epoch", "budget_epochs": BUDGET_EPOCHS, "step_match": STEP_MATCH,
              "splits": SPLITS, "A1": a1, "A2": a2, "B": result_b, "C": c, "moves": moves, "D": d, "chosen": chosen,
              "chosen_settings": settings, **_cost()}
    OUT_JSON.write_text(json.dumps(result, indent=1) + "\n")
    write_page(result)
    print(json.dumps(settings), flush=True)
    return 0


def _require_finished(stage: str, chosen: dict | None) -> None:
    missing = [r for r in runs_for(stage, chosen) if not r.finished]
    if missing:
        raise SystemExit(f"--report: stage {stage} has {len(missing)} unfinished runs (e.g. {missing[0].directory}): "
                         "run the study without --report to train them")


def _cost() -> dict:
    """How many runs the study holds and their training time (seconds, summed over runs)."""
    summaries = [json.loads(p.read_text()) for p in (RESULTS / "synthetic").glob("*/*/summary.json")]
    return {"n_runs": len(summaries), "run_seconds": round(sum(s["seconds"] for s in summaries))}


def _gap(p: dict) -> str:
    """How far a model's own classifier is from a linear probe on its representation, in words."""
    gap = round(p["own"], 1) - round(p["probe"], 1)   # as the table shows them
    return f"{abs(gap):.1f} points {'above' if gap >= 0 else 'below'}"


def _cell(s: dict, bold: bool = False) -> str:
    text = f"{s['mean']:.1f} ± {s['sd']:.1f}" if not math.isnan(s.get("sd", math.nan)) else f"{s['mean']:.1f}"
    return f"**{text}**" if bold else text


def write_page(r: dict) -> None:
    a1, a2, b, c, d, ch, st = r["A1"], r["A2"], r["B"], r["C"], r["D"], r["chosen"], r["chosen_settings"]
    e, kk = ch["epochs"], int(ch["contrastive_stretch"])
    rows_a1 = ["| | t = 0 | t = 1 |", "|---|---|---|"]
    for f in (0, 1, 2):
        rows_a1.append(f"| f = {f} | " + " | ".join(_cell(a1[f"f{f}t{t}"], f"f{f}t{t}" == ch["mask_candidate"]) for t in (0, 1)) + " |")
    rows_a2 = ["| book epochs | " + " | ".join(f"lr {lr:g}" for lr in LRS) + " |", "|---|" + "---|" * len(LRS)]
    for ep in EPOCHS:
        rows_a2.append(f"| {ep}{' (over budget)' if ep > BUDGET_EPOCHS else ''} | " +
                       " | ".join(_cell(a2[f"lr{lr:g}-e{ep}"], f"lr{lr:g}-e{ep}" == ch["candidate"]) for lr in LRS) + " |")
    bs, bm = b["scores"], b["moves"]
    rows_b = ["| hybrid | " + " | ".join(f"temperature {t:g}" for t in TEMPERATURES) + " |", "|---|" + "---|" * len(TEMPERATURES)]
    for k in STRETCHES:
        chosen_k = k == kk
        rows_b.append(f"| {k * e} epochs (%) | " + " | ".join(
            _cell(bs[f"tau{t:g}-k{k}-x1"], chosen_k and t == ch["temperature"]) for t in TEMPERATURES) + " |")
        rows_b.append(f"| {2 * k * e} epochs (%) | " + " | ".join(_cell(bs[f"tau{t:g}-k{k}-x2"]) for t in TEMPERATURES) + " |")
        rows_b.append(f"| change (points) | " + " | ".join(
            (f"**{bm[f'{t:g}-k{k}']:+.1f}**" if abs(bm[f"{t:g}-k{k}"]) >= 2 else f"{bm[f'{t:g}-k{k}']:+.1f}")
            for t in TEMPERATURES) + " |")
    label = {"ce": "Cross-entropy", "hybrid": "Hybrid (SoundCLR)", "supcon": "SupCon, two stages"}
    rows_c = ["| scheme | length | trained (%) | twice as long, schedule stretched (%) | change (points) | runs converged |",
              "|---|---|---|---|---|---|"]

    def crow(key, name, length):
        one, two = c[f"{key}-x1"], c[f"{key}-x2"]
        m = r["moves"][key]
        mark = "**" if abs(m) >= 2 else ""
        rows_c.append(f"| {name} | {length} | {_cell(one)} | {_cell(two)} | {mark}{m:+.1f}{mark} | "
                      f"{one['converged']}/{one['n']}, {two['converged']}/{two['n']} |")
    crow("ce", label["ce"], f"{e} epochs")
    for k in STRETCHES:
        crow(f"hybrid-k{k}", label["hybrid"], f"{k * e} epochs")
        crow(f"supcon-k{k}", label["supcon"], f"stage 1: {k * e}, stage 2: {e} epochs")
    used = ["ce", f"hybrid-k{kk}", f"supcon-k{kk}"]
    worst = max(abs(r["moves"][k]) for k in used)
    design, pr, grads = d["design"], d["probe"], d["gradients"]
    pooled = d["pooled"]
    ce_pl, ce_p = design["ce-plain"]["mean"], pooled["ce"]["mean"]
    hy_pl, hy_p = design["hybrid-plain"]["mean"], pooled["hybrid"]["mean"]
    design_text = (f"Cross-entropy, the model that chooses every value of this study, scores {ce_pl:.1f} % with the plain "
                   f"design and {ce_p:.1f} % with the preset's: "
                   + ("by the study's rule the preset's design is also its choice" + (
                       ", though by less than the spread over splits. " if abs(ce_p - ce_pl) < max(design["ce-plain"]["sd"], pooled["ce"]["sd"])
                       else ". ") if ce_p >= ce_pl else
                      "by the study's rule the plain design would be the choice; the preset keeps the design the rest "
                      "of the study was run with, and says so here. ")
                   + f"The hybrid scores {hy_pl:.1f} % and {hy_p:.1f} %. ")
    if (hy_pl - ce_pl) * (hy_p - ce_p) < 0:
        design_text += (f"With the plain design the hybrid {'leads' if hy_pl > ce_pl else 'trails'} cross-entropy by "
                        f"{abs(hy_pl - ce_pl):.1f} points, with the preset's it {'leads' if hy_p > ce_p else 'trails'} by "
                        f"{abs(hy_p - ce_p):.1f}: on these data, which of the two comes out ahead (claim C1) depends on "
                        "the tiny network's design, one more reason why the toy verdict on C1 says little about "
                        "ResNet-50 on ESC-50.")
    else:
        design_text += "The order of the two schemes is the same with either design."
    page = f"""# How the quick preset was chosen

**Which settings does the offline default use, why, and do its runs really converge?** The
`quick` preset trains a tiny network on the synthetic dataset within the two-core budget of
`make book`. Its training settings were chosen the way the paper chose its own (a grid search
with the cross-entropy model), but on **validation folds, never a test fold**: for each test
fold $t = 1..5$ the next fold validates and the other three train; a candidate's score is the
mean over the splits of the *final* epoch's validation accuracy (in %, ± the standard
deviation over the runs). The study is the script `studies/tune_quick.py`; this page is its
output (written on {r['date']}; its {r['n_runs']} runs train in {r['run_seconds'] / 3600:.1f} hours, about
{r['run_seconds'] / 2 / 60:.0f} minutes on a two-core CPU with two workers).
Epochs are given as the book counts them: a study run trains on three folds instead of four,
so it runs {r['step_match']:.2f} times as many epochs, the same number of steps.

Fixed by the CPU budget rather than searched: 8 kHz, 256-sample windows and hops (79 frames for
a 2.5-s clip), 32 mel bands, the `tiny` backbone with one input channel, batches of 32 clips,
masks of the paper's relative widths (F = 8 of 32 bands, T = 6 of 79 frames), and the
released code's form of schedule ({r['schedule_rule']}).

## Stage A1: the masks (cross-entropy, as the paper's Table I)

Learning rate {A1_LR:g}, {A1_EPOCHS} epochs, masks filled with 0 dB as in the paper; one seed, five splits.

{chr(10).join(rows_a1)}

Chosen (bold): **{ch['masks']['freq_masks']} frequency and {ch['masks']['time_masks']} time masks**.
Frequency masks filled with the loudest value cost accuracy on these data at this budget; the
ablation page tests the paper's own masks (f = 2, t = 1) against none on every fold.

## Stage A2: learning rate and epochs (cross-entropy)

{chr(10).join(rows_a2)}

Chosen: the best candidate that `make book` affords ({r['budget_epochs']} epochs at most):
**lr {ch['lr']:g}, E = {e} epochs**. Stage C shows that cross-entropy has converged by then.

## Stage B: how long the contrastive schemes train, and their temperature

Cross-entropy cannot choose the SupCon temperature, so the hybrid (the paper's model) chose
it, with the settings above; the two-stage scheme uses the same value, as the paper does (0.05
for both). But at E epochs the hybrid has not finished learning at any temperature: with
twice the training its accuracy still rises by more than 2 points (bold). So the stage that
minimises a contrastive term, the hybrid's and the two-stage scheme's first, trains k times as
long as cross-entropy (the setting `contrastive_stretch`, the schedule stretched), and k and
the temperature were chosen together: {ch['temperature_rule']}. Five splits and two seeds, ten
runs per cell.

{chr(10).join(rows_b)}

Chosen: **k = {kk}, temperature {ch['temperature']:g}**.

## Stage C: do the runs converge?

Every scheme trained for its length and for twice that length with the schedule stretched
(the same warm-up fraction, the same final rate), five splits and two seeds each. A plateau
reached only because the learning rate decayed to nothing would show here as a gain from the
longer schedule; bold marks a change of 2 points or more. "Runs converged" counts the runs that
pass {{py:func}}`soundclr.claims.convergence`, applied here to the validation fold.

{chr(10).join(rows_c)}

With the chosen lengths (cross-entropy {e} epochs, the contrastive stages {kk * e}) the largest
change among the three schemes is **{worst:.1f} points** ({'less' if worst < 2 else 'more'} than the 2
points required). The comparisons of the book are therefore between converged models trained
for different lengths: the paper trains all three for 800 epochs, where all of them have
converged; on this budget the contrastive schemes need {kk} times cross-entropy's training to get
there, which is itself a finding about them (claim C8 asks the related question of how fast
each scheme reaches its final accuracy).

## Why the tiny network looks the way it does, and why the contrastive schemes learn slowest

The first tiny network of this project had neither a max-pool after its stem nor a BatchNorm
on its pooled features; the preset's `pooled-centred` design adds both (the max-pool, as in
ResNet's stem, quarters the area every block works on; the BatchNorm centres the
representation before it is normalised; see {{py:class}}`soundclr.model.TinyResNet`). The
design was fixed before this study, so here both designs train with the chosen settings (five
splits, seed 0; the preset's column is stage C's first seed):

| | `plain` (the first design) | `pooled-centred` (the preset) |
|---|---|---|
| cross-entropy, validation accuracy (%) | {_cell(design['ce-plain'])} | {_cell(pooled['ce'])} |
| hybrid, validation accuracy (%) | {_cell(design['hybrid-plain'])} | {_cell(pooled['hybrid'])} |

{design_text}

The classifier reads the L2-normalised representation $h$ ($\\lVert h \\rVert = 1$), so its
logits are bounded by the norm of its weights, which Adam grows step by step. At the chosen
lengths (stage C, seed 0):

| | cross-entropy | hybrid | SupCon, two stages |
|---|---|---|---|
| the model's own classifier, validation accuracy (%) | {pr['ce']['own']:.1f} | {pr['hybrid']['own']:.1f} | {pr['supcon']['own']:.1f} |
| a logistic-regression probe on its frozen $h$ (%) | {pr['ce']['probe']:.1f} | {pr['hybrid']['probe']:.1f} | {pr['supcon']['probe']:.1f} |
| mean norm of the classifier's weight rows | {pr['ce']['weight_norm']:.2f} | {pr['hybrid']['weight_norm']:.2f} | {pr['supcon']['weight_norm']:.2f} |

Along one hybrid run (split 1, seed 0), the gradient of the contrastive term on the encoder
against that of the cross-entropy term:

| epoch | {' | '.join(str(g['epoch']) for g in grads)} |
|---|{'---|' * len(grads)}
| norm ratio, SupCon / cross-entropy | {' | '.join(f"{g['ratio']:.1f}" for g in grads)} |
| cosine between the two | {' | '.join(f"{g['cosine']:+.2f}" for g in grads)} |

How to read these. With Adam every parameter moves by about the learning rate whatever the
scale of its gradient, so the classifier's weights grow as fast under the hybrid loss as under
cross-entropy; what differs is the encoder. Under cross-entropy the encoder also moves each $h$
towards its class's weight vector, so the margins grow from both sides. Under the hybrid loss
the contrastive term, whose gradient on the encoder is {min(g['ratio'] for g in grads):.1f} to
{max(g['ratio'] for g in grads):.1f} times larger and at first nearly orthogonal to the
cross-entropy's (cosine {grads[0]['cosine']:+.2f} in the first epoch), steers the encoder: it
separates the classes in the projection space, but does not align $h$ with the classifier,
which has to grow its weights alone; at the chosen length the hybrid's own classifier is
{_gap(pr['hybrid'])} a probe on its representation, cross-entropy's {_gap(pr['ce'])}. The two-stage scheme trains its classifier on
a frozen encoder, so its classifier matches its probe; its slowness is in stage 1, where SupCon
alone shapes the representation from a few positives per batch.

## The preset

`quick` in `soundclr/config.py` holds the chosen values: lr {st['lr']:g}, {st['epochs']}
epochs ({st['warmup_epochs']} of warm-up, then $\\gamma$ = {st['gamma']:.4f} per epoch),
{st['freq_masks']} frequency and {st['time_masks']} time masks, temperature {st['temperature']:g},
contrastive stages {st['contrastive_stretch']:g} times as long (`contrastive_stretch`), and the
two-stage scheme's stage 2 {st['stage2_epochs']} epochs. A test (`tests/test_claims.py`) checks
that the preset and this study agree.
"""
    OUT_PAGE.write_text(page)


if __name__ == "__main__":
    sys.exit(main())
