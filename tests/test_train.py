"""Training, resumption, the three schemes and the grid machinery, on the synthetic dataset."""
import json
import os
import subprocess
import sys

import pytest
import torch

from soundclr import preset
from soundclr.analysis.tables import ensemble_table
from soundclr.analysis.tables import scheme_summary as scheme_table
from soundclr.runs.grid import grid, run_grid
from soundclr.runs.inference import noise_accuracy
from soundclr.runs.store import frame, load_summaries
from soundclr.train import lr_factor, train_run


def small(root, **kw):
    base = dict(dataset="synthetic", data_root=str(root), epochs=3, warmup_epochs=1, stage2_epochs=2, batch_size=32,
                contrastive_stretch=1.0)
    base.update(kw)
    return preset("quick", **base)


def released_warmup_exponential(epoch, warm=10, gamma=0.98, cold=0):
    """The released code's WarmUpExponentialLR multiplier, written from its definition:
    warm-up epochs scale by 0.1 + 0.9 (e + 1) / warm; after that gamma ** (e - cold - warm)."""
    if epoch < cold + warm:
        return 0.1 + 0.9 * (epoch - cold + 1) / warm
    return gamma ** (epoch - cold - warm)


class Killed(Exception):
    """Stands in for a kill right after an epoch's checkpoint."""


def train_until(cfg, run_dir, epochs: int, bank) -> None:
    """Train ``run_dir`` and stop after ``epochs`` epochs, as a kill right after that epoch's checkpoint
    would (checkpoints every epoch: an execution setting, so the run's identity is unchanged)."""
    def stop(row):
        if row["epoch"] == epochs:
            raise Killed
    with pytest.raises(Killed):
        train_run(cfg.override(checkpoint_every=1, checkpoint_seconds=0.0), run_dir, bank=bank, progress=False,
                  on_epoch=stop)


def test_schedule_is_the_released_codes():
    # 10 warm-up epochs: lr x (0.1 + 0.09 (e+1)), then x 0.98 per epoch from 1.0.
    for e in range(30):
        assert lr_factor(e, 10, 0.98) == pytest.approx(released_warmup_exponential(e))
    assert [round(lr_factor(e, 10, 0.98), 6) for e in range(10)] == [round(0.1 + 0.09 * (e + 1), 6) for e in range(10)]
    assert lr_factor(10, 10, 0.98) == 1.0 and lr_factor(11, 10, 0.98) == pytest.approx(0.98)
    assert lr_factor(0, 0, 0.5) == 1.0


@pytest.mark.parametrize("scheme", ["ce", "supcon", "hybrid"])
def test_each_scheme_learns(scheme, synthetic_root, synthetic_bank, tmp_path):
    cfg = small(synthetic_root, scheme=scheme, epochs=8, warmup_epochs=1, stage2_epochs=4)
    s = train_run(cfg, tmp_path / scheme, bank=synthetic_bank, progress=False)
    chance = 1 / synthetic_bank.n_classes
    assert s["final"]["test_acc"] > 3 * chance, s
    rows = [json.loads(line) for line in (tmp_path / scheme / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == cfg.total_epochs == cfg.optim.epochs + (cfg.optim.stage2_epochs if scheme == "supcon" else 0)
    # the summary's numbers are the metrics lines': final = last epoch, best = the arg-max epoch
    assert s["final"]["test_acc"] == pytest.approx(rows[-1]["test_acc"])
    evaluated = [r for r in rows if r.get("test_acc") is not None]
    assert s["best_on_test"]["test_acc"] == max(r["test_acc"] for r in evaluated)
    assert rows[s["best_on_test"]["epoch"] - 1]["test_acc"] == s["best_on_test"]["test_acc"]
    assert "paper" in s["best_on_test"]["protocol"]
    assert sum(map(sum, s["confusion"])) == s["n_test"] == int((synthetic_bank.folds == 1).sum())
    for name in ("config.json", "summary.json", "model.pt", "outputs.pt"):
        assert (tmp_path / scheme / name).exists()
    assert not (tmp_path / scheme / "checkpoint.pt").exists()


def test_stage2_freezes_the_encoder(synthetic_root, synthetic_bank, tmp_path):
    cfg = small(synthetic_root, scheme="supcon", epochs=1, stage2_epochs=2)
    train_until(cfg, tmp_path / "a", 1, synthetic_bank)
    before = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["model"]
    train_run(cfg, tmp_path / "a", bank=synthetic_bank, progress=False)
    after = torch.load(tmp_path / "a" / "model.pt", weights_only=False)["state_dict"]
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("classifier.") for k in changed), changed


@pytest.mark.parametrize("scheme, killed_after", [("hybrid", 2), ("supcon", 2), ("supcon", 4)])
def test_resume_equals_uninterrupted(scheme, killed_after, synthetic_root, synthetic_bank, tmp_path):
    # supcon killed after epoch 4 resumes inside stage 2 (3 epochs of stage 1, then 2 of stage 2)
    cfg = small(synthetic_root, scheme=scheme, epochs=3, stage2_epochs=2)
    whole = train_run(cfg, tmp_path / "whole", bank=synthetic_bank, progress=False)
    train_until(cfg, tmp_path / "killed", killed_after, synthetic_bank)
    assert (tmp_path / "killed" / "checkpoint.pt").exists() and not (tmp_path / "killed" / "summary.json").exists()
    resumed = train_run(cfg, tmp_path / "killed", bank=synthetic_bank, progress=False)
    assert resumed["final"]["test_acc"] == whole["final"]["test_acc"]
    a = (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()
    b = (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
    strip = lambda rows: [{k: v for k, v in json.loads(r).items() if k != "seconds"} for r in rows]
    assert strip(a) == strip(b)
    wa = torch.load(tmp_path / "whole" / "model.pt", weights_only=False)["state_dict"]
    wb = torch.load(tmp_path / "killed" / "model.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_checkpoint_of_another_configuration_is_refused(synthetic_root, synthetic_bank, tmp_path):
    cfg = small(synthetic_root, scheme="ce", epochs=2)
    train_until(cfg, tmp_path / "r", 1, synthetic_bank)
    with pytest.raises(RuntimeError, match="different configuration"):
        train_run(cfg.override(alpha=0.1), tmp_path / "r", bank=synthetic_bank, progress=False)


def test_grid_skips_finished_runs_and_shards(synthetic_root, synthetic_bank, tmp_path, monkeypatch):
    cfg = small(synthetic_root, epochs=1, stage2_epochs=1)
    runs = grid(cfg, "toy", schemes=["ce", "hybrid"], folds=[1, 2], seeds=[0], results=tmp_path)
    assert len(runs) == 4 and len({r.directory for r in runs}) == 4
    run_grid(runs, shard=(0, 2), progress=False, bank=synthetic_bank)
    assert [r.finished for r in runs] == [True, False, True, False]
    run_grid(runs, shard=(1, 2), progress=False, bank=synthetic_bank)
    assert all(r.finished for r in runs)
    import soundclr.runs.grid
    monkeypatch.setattr(soundclr.runs.grid, "train_run", lambda *a, **k: pytest.fail("a finished run was trained again"))
    assert len(run_grid(runs, progress=False, bank=synthetic_bank)) == 4
    df = load_summaries(tmp_path, "synthetic", "toy")
    assert len(df) == 4 and set(df.scheme) == {"ce", "hybrid"} and set(df.fold) == {1, 2}
    # a changed setting is a new run, not a stale finished one
    assert not grid(cfg.override(alpha=0.3), "toy", schemes=["hybrid"], folds=[1], results=tmp_path)[0].finished


def test_a_run_finished_in_another_experiment_is_reused(synthetic_root, synthetic_bank, tmp_path, monkeypatch):
    cfg = small(synthetic_root, epochs=1)
    first = grid(cfg, "main", schemes=["ce"], folds=[1], results=tmp_path)
    run_grid(first, progress=False, bank=synthetic_bank)
    import soundclr.runs.grid
    monkeypatch.setattr(soundclr.runs.grid, "train_run", lambda *a, **k: pytest.fail("the same run was trained twice"))
    again = grid(cfg, "mask-fill", schemes=["ce"], folds=[1], results=tmp_path, variants={"fill-zero": {"mask_fill": "zero"}})
    assert not again[0].finished and again[0].config.identity() == first[0].config.identity()
    run_grid(again, progress=False, bank=synthetic_bank)
    assert again[0].finished and again[0].directory != first[0].directory
    assert json.loads((again[0].directory / "summary.json").read_text()) == json.loads((first[0].directory / "summary.json").read_text())
    other = grid(cfg, "mask-fill", schemes=["ce"], folds=[1], results=tmp_path, variants={"fill-min": {"mask_fill": "min"}})
    with pytest.raises(pytest.fail.Exception):
        run_grid(other, progress=False, bank=synthetic_bank)  # a different setting is a new run: it must train


def test_tables_ensemble_and_noise_on_a_toy_grid(synthetic_root, synthetic_bank, tmp_path):
    cfg = small(synthetic_root, epochs=2)
    runs = grid(cfg, "toy", schemes=["ce"], folds=[1, 2], seeds=[0, 1], results=tmp_path)
    run_grid(runs, progress=False, bank=synthetic_bank)
    df = frame(runs)
    t = scheme_table(df).set_index("scheme")
    per_seed = df.groupby("seed").final_acc.mean() * 100
    assert t.loc["ce", "mean"] == pytest.approx(per_seed.mean())
    assert t.loc["ce", "std"] == pytest.approx(per_seed.std())
    assert t.loc["ce", "best"] == pytest.approx(per_seed.max())
    # ensemble: mean softmax of the two seeds, recomputed here independently
    accs = []
    for fold in (1, 2):
        outs = [torch.load(r.directory / "outputs.pt", weights_only=False) for r in runs if r.config.run.test_fold == fold]
        probs = (outs[0]["probs"] + outs[1]["probs"]) / 2
        accs.append((probs.argmax(1) == outs[0]["labels"]).float().mean().item())
    e = ensemble_table(df).set_index("scheme")
    assert e.loc["ce", "ensemble"] == pytest.approx(100 * sum(accs) / 2)
    assert e.loc["ce", "members"] == 2
    # noise: std 0 reproduces the final accuracy; results are cached
    run = runs[0].directory
    accs = noise_accuracy(run, [0.0, 1e-3, 0.3], bank=synthetic_bank)
    assert accs[0.0] == df.set_index("run_dir").loc[str(run), "final_acc"]   # exactly Table III's number
    assert accs[0.3] < accs[0.0]  # loud noise hurts
    assert json.loads((run / "noise.json").read_text())
    # several draws in one call: the same numbers as one call per draw; no noise needs no draw
    from soundclr.runs.inference import noise_accuracies
    many = noise_accuracies(run, [0.0, 0.3], [0, 1], bank=synthetic_bank)
    assert many[(0.3, 0)] == accs[0.3] and many[(0.0, 1)] == many[(0.0, 0)] == accs[0.0]
    assert many[(0.3, 1)] == noise_accuracy(run, [0.3], bank=synthetic_bank, seed=1)[0.3]
    assert "0:1" not in json.loads((run / "noise.json").read_text())


def test_cli_train_predict_and_errors(synthetic_root, tmp_path):
    import soundfile as sf

    from soundclr.cli import main
    common = ["--preset", "quick", "--dataset", "synthetic", "--data-root", str(synthetic_root), "--epochs", "1",
              "--warmup-epochs", "1", "--batch-size", "32", "--results", str(tmp_path / "res")]
    assert main(["train", *common, "--schemes", "ce", "--folds", "1"]) == 0
    run = next(p for p in (tmp_path / "res" / "synthetic" / "main").iterdir() if p.is_dir())
    # predict any file: a 48 kHz stereo clip
    t = torch.linspace(0, 1, 48000)
    sf.write(tmp_path / "clip.wav", torch.stack([torch.sin(2 * torch.pi * 440 * t), torch.sin(2 * torch.pi * 660 * t)], 1).numpy() * 0.3, 48000)
    from soundclr.runs.inference import predict_file
    top = predict_file(tmp_path / "clip.wav", run, top=5)
    assert len(top) == 5 and abs(sum(p for _, p in top)) <= 1.0 + 1e-6 and top[0][1] >= top[-1][1]
    assert main(["predict", str(tmp_path / "clip.wav"), "--checkpoint", str(run)]) == 0
    # runtime errors exit 1, usage errors 2 (as argparse does)
    assert main(["predict", str(tmp_path / "clip.wav"), "--checkpoint", str(tmp_path / "nothing")]) == 1
    assert main(["train", *common, "--window", "triangle"]) == 2
    assert main(["train", "--preset", "paper", "--dataset", "esc50", "--data-root", str(tmp_path / "empty"), "--results", str(tmp_path / "r2")]) == 1
    with pytest.raises(SystemExit) as usage:
        main(["train", "--no-such-setting", "1"])
    assert usage.value.code == 2


def test_ddp_two_processes_match_one(synthetic_root, synthetic_bank, tmp_path):
    """torchrun with 2 CPU processes (gloo) trains the same run as 1 process, end to end.

    The loss is computed on the outputs gathered from both ranks, so the gradient is the
    single-process one (tests/test_distributed.py checks that exactly); only BatchNorm's
    batch statistics differ (per rank on CPU, where SyncBatchNorm is not available), hence a
    tolerance here rather than equality."""
    args = ["--preset", "quick", "--dataset", "synthetic", "--data-root", str(synthetic_root), "--epochs", "2",
            "--warmup-epochs", "1", "--batch-size", "32", "--schemes", "hybrid", "--folds", "1", "--device", "cpu",
            "--contrastive-stretch", "1", "--lr", "3e-3"]
    env = dict(os.environ, SOUNDCLR_BACKEND="gloo", OMP_NUM_THREADS="1")
    import socket
    with socket.socket() as sock:  # a free loopback port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(port),
           "-m", "soundclr.cli", "train", *args, "--results", str(tmp_path / "ddp")]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    from soundclr.cli import main
    assert main(["train", *args, "--results", str(tmp_path / "one")]) == 0
    read = lambda d: [json.loads(x) for x in next(p for p in (tmp_path / d / "synthetic" / "main").iterdir() if p.is_dir()).joinpath("metrics.jsonl").read_text().splitlines()]
    ddp, one = read("ddp"), read("one")
    assert len(ddp) == len(one) == 2
    for a, b in zip(ddp, one):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=0.05)
    # Not the test accuracy: after two epochs it sits near chance, where one clip of 80 flips 1.25
    # points and the per-rank BatchNorm statistics move it by 10 (seen: 32.5 vs 42.5 %).
    assert {r["epoch"] for r in ddp} == {r["epoch"] for r in one}


@pytest.mark.parametrize("rule", ["best_test", "final"])
def test_stage2_starts_from_the_chosen_stage1_epoch(rule, synthetic_root, synthetic_bank, tmp_path):
    """best_test: the stage-1 epoch with the lowest SupCon loss on the test fold (the released code's rule,
    ties to the later epoch); final: the last stage-1 epoch. Stage 2 then changes only the classifier."""
    from soundclr.audio.pipeline import Pipeline
    from soundclr.losses import supcon_loss
    from soundclr.model import build_model
    cfg = small(synthetic_root, scheme="supcon", epochs=4, stage2_epochs=1, stage2_start=rule)
    s = train_run(cfg, tmp_path / "whole", bank=synthetic_bank, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    stage1 = [r for r in rows if r["stage"] == 1]
    if rule == "final":
        k = 4
        assert all("select_supcon" not in r for r in rows)
    else:
        losses = [r["select_supcon"] for r in stage1]
        k = max(i for i, v in enumerate(losses) if v == min(losses)) + 1
    assert s["stage2_start"] == {"rule": rule, "epoch": k}
    # the same run stopped after epoch k holds that epoch's weights
    train_until(cfg, tmp_path / "at-k", k, synthetic_bank)
    at_k = torch.load(tmp_path / "at-k" / "checkpoint.pt", weights_only=False)["model"]
    final = torch.load(tmp_path / "whole" / "model.pt", weights_only=False)["state_dict"]
    for key, value in at_k.items():
        if not key.startswith("classifier."):
            assert torch.equal(final[key], value), key
    if rule == "best_test":
        # the selection loss, recomputed here: SupCon (L_out, no_positive as configured) of the test-fold
        # projections in batches of 64 drawn in a fixed shuffled order, averaged over the batches
        model = build_model(cfg, synthetic_bank.n_classes)
        model.load_state_dict(at_k)
        model.eval()
        pipe = Pipeline.from_config(cfg).eval()
        test = synthetic_bank.split(1).test
        with torch.no_grad():
            waves, lengths = synthetic_bank.batch(test)
            z = model(pipe(waves, lengths)).projection
        labels = synthetic_bank.labels[test]
        order = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))
        o = cfg.resolved().optim
        want = torch.stack([supcon_loss(z[i], labels[i], o.temperature, form=o.supcon_form, no_positive=o.no_positive)
                            for i in order.split(64)]).mean().item()
        assert stage1[k - 1]["select_supcon"] == pytest.approx(want, rel=1e-4)


def test_stage2_from_the_validation_fold_needs_one(synthetic_root):
    from soundclr.config import ConfigError
    with pytest.raises(ConfigError, match="val_fold"):
        small(synthetic_root, scheme="supcon", stage2_start="best_val")
    assert small(synthetic_root, scheme="supcon", stage2_start="best_val", val_fold=2).optim.stage2_start == "best_val"
    assert preset("paper").optim.stage2_start == "best_test"   # the released code's rule


def test_a_corrupt_checkpoint_is_moved_aside_and_the_run_restarts(synthetic_root, synthetic_bank, tmp_path):
    cfg = small(synthetic_root, scheme="ce", epochs=2)
    whole = train_run(cfg, tmp_path / "whole", bank=synthetic_bank, progress=False)
    train_until(cfg, tmp_path / "r", 1, synthetic_bank)
    ckpt = tmp_path / "r" / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])                   # truncated, as by a full disk
    with pytest.warns(UserWarning, match=r"checkpoint\.pt cannot be read.*moved to checkpoint\.pt\.corrupt-"):
        again = train_run(cfg, tmp_path / "r", bank=synthetic_bank, progress=False)
    assert again["final"]["test_acc"] == whole["final"]["test_acc"]
    assert len(list((tmp_path / "r").glob("checkpoint.pt.corrupt-*"))) == 1


def test_ctrl_c_stops_with_one_line_and_the_run_resumes(synthetic_root, tmp_path):
    """Ctrl-C (SIGINT) during training: exit 130, one line on stderr and no traceback; the next
    command resumes the run from its checkpoint and ends as an uninterrupted run does."""
    import signal
    import time
    args = [sys.executable, "-m", "soundclr", "train", "--preset", "quick", "--dataset", "synthetic", "--data-root",
            str(synthetic_root), "--epochs", "6", "--warmup-epochs", "1", "--schemes", "ce", "--folds", "1", "--device", "cpu",
            "--checkpoint-seconds", "0", "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # SIGINT as a terminal leaves it: a test run started in the background (`make test &`) inherits it ignored
    proc = subprocess.Popen([*args, "--results", str(tmp_path / "r")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while time.time() < deadline and not list((tmp_path / "r").glob("synthetic/main/*/checkpoint.pt")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "resumes" in err
    run = next(p for p in (tmp_path / "r").glob("synthetic/main/*") if p.is_dir())
    assert (run / "checkpoint.pt").exists() and not (run / "summary.json").exists() and not (run / "lease.json").exists()
    again = subprocess.run([*args, "--results", str(tmp_path / "r")], env=env, capture_output=True, text=True, timeout=600)
    whole = subprocess.run([*args, "--results", str(tmp_path / "w")], env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == whole.returncode == 0
    a = json.loads((run / "summary.json").read_text())["final"]["test_acc"]
    b = json.loads(next((tmp_path / "w").glob("synthetic/main/*/summary.json")).read_text())["final"]["test_acc"]
    assert a == b


def test_a_corrupt_summary_is_named(synthetic_root, tmp_path, capsys):
    """A torn summary.json of a finished run stops the grid with an error naming the file, and is left as it was."""
    from soundclr.cli import main
    args = ["train", "--preset", "quick", "--dataset", "synthetic", "--data-root", str(synthetic_root), "--epochs", "1",
            "--warmup-epochs", "1", "--batch-size", "32", "--schemes", "ce", "--folds", "1", "--results", str(tmp_path), "--quiet"]
    assert main(args) == 0
    summary = next((tmp_path / "synthetic" / "main").glob("*/summary.json"))
    summary.write_text('{"final": ')          # torn
    capsys.readouterr()
    code = main(args)
    err = capsys.readouterr().err
    assert code == 1 and "summary.json" in err and str(summary.parent) in err, err
    assert summary.read_text() == '{"final": '


def test_contrastive_stretch_lengthens_the_stages_with_a_supcon_term(synthetic_root, synthetic_bank, tmp_path):
    """contrastive_stretch k: the hybrid, and stage 1 of the two-stage scheme, run k x epochs with k x the
    warm-up and gamma^(1/k), the same schedule stretched; stage 2 and cross-entropy are untouched."""
    cfg = small(synthetic_root, scheme="supcon", epochs=3, warmup_epochs=1, stage2_epochs=2, contrastive_stretch=2.0,
                gamma=0.81)
    assert cfg.override(scheme="hybrid").total_epochs == 6 and cfg.override(scheme="ce").total_epochs == 3
    train_run(cfg, tmp_path / "r", bank=synthetic_bank, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    stage1 = [r for r in rows if r["stage"] == 1]
    assert len(stage1) == 6 and len(rows) == 8
    lr = cfg.resolved().optim.lr
    assert [r["lr"] for r in stage1] == pytest.approx([lr * lr_factor(e, 2, 0.9) for e in range(6)])
    assert stage1[-1]["lr"] == pytest.approx(lr * 0.81 ** ((6 - 2 - 1) / 2))   # the same decay per unit of training
