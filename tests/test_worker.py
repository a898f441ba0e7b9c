"""Run claims: several workers on one grid train each run exactly once; a killed worker's run is
taken over and resumed; `soundclr status` reports what is finished, running, stale, failed and to do."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from soundclr.cli import main
from soundclr.runs import lease
from soundclr.runs import status as run_status
from soundclr.runs.grid import grid, run_grid


# -- the claim protocol ------------------------------------------------------------------------
def test_one_claim_at_a_time_and_release(tmp_path):
    first = lease.take_lease(tmp_path / "run", stale_seconds=60)
    assert first is not None and (tmp_path / "run" / "lease.json").exists()
    assert lease.take_lease(tmp_path / "run", stale_seconds=60) is None          # fresh: held
    first.beat({"epoch": 3, "seconds": 1.5})
    held = lease.read_lease(tmp_path / "run")
    assert held["epoch"] == 3 and held["pid"] == os.getpid() and held["token"] == first.token
    first.release()
    assert not (tmp_path / "run" / "lease.json").exists()
    assert lease.take_lease(tmp_path / "run", stale_seconds=60) is not None      # free again


def test_a_holder_gone_from_this_host_is_taken_over_at_once(tmp_path):
    """A lease whose holder ran on this host and no longer exists (or whose pid now belongs to a process that
    started at another time) is taken over whatever its heartbeat's age; one from another host waits."""
    import socket

    from soundclr.runs.threads import start_time
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    for run, info in {"dead": {"pid": gone.pid, "host": socket.gethostname()},
                      "reused": {"pid": os.getpid(), "host": socket.gethostname(), "start": "0"},
                      "elsewhere": {"pid": gone.pid, "host": "another-host"},
                      "alive": {"pid": os.getpid(), "host": socket.gethostname(),
                                "start": start_time(os.getpid())}}.items():
        (tmp_path / run).mkdir()
        (tmp_path / run / "lease.json").write_text(json.dumps({**info, "heartbeat": time.time(), "token": "t"}))
    assert lease.take_lease(tmp_path / "dead", stale_seconds=900) is not None
    assert lease.take_lease(tmp_path / "reused", stale_seconds=900) is not None
    assert lease.take_lease(tmp_path / "elsewhere", stale_seconds=900) is None
    assert lease.take_lease(tmp_path / "alive", stale_seconds=900) is None


def test_a_stale_claim_is_taken_over_and_its_owner_notices(tmp_path):
    old = lease.take_lease(tmp_path / "run", stale_seconds=0.2)
    time.sleep(0.3)
    new = lease.take_lease(tmp_path / "run", stale_seconds=0.2)
    assert new is not None and new.token != old.token
    with pytest.raises(lease.LeaseLost, match="took this run over"):
        old.beat({"epoch": 1, "seconds": 0.1})
    old.release()                                         # must not remove the taker's claim
    assert lease.read_lease(tmp_path / "run")["token"] == new.token


def test_the_heartbeat_thread_keeps_a_claim_fresh(tmp_path):
    held = lease.take_lease(tmp_path / "run", stale_seconds=0.4)
    held.start_heartbeat(every=0.05)
    time.sleep(0.6)
    assert lease.take_lease(tmp_path / "run", stale_seconds=0.4) is None         # still fresh after 0.6 s > 0.4 s
    held.release()


def test_a_failure_is_recorded_and_skipped_until_retried(tmp_path):
    held = lease.take_lease(tmp_path / "run", stale_seconds=60)
    try:
        raise RuntimeError("CUDA out of memory")
    except RuntimeError as err:
        held.fail(err)
    failed = json.loads((tmp_path / "run" / "failed.json").read_text())
    assert failed["error"] == "RuntimeError: CUDA out of memory" and "Traceback" in failed["traceback"]
    assert lease.take_lease(tmp_path / "run", stale_seconds=60) is None
    again = lease.take_lease(tmp_path / "run", stale_seconds=60, retry_failed=True)
    assert again is not None and not (tmp_path / "run" / "failed.json").exists()


def test_concurrent_claims_have_one_winner(tmp_path):
    """Many processes racing for the same (stale) claim: exactly one gets it."""
    old = lease.take_lease(tmp_path / "run", stale_seconds=30)
    info = lease.read_lease(tmp_path / "run")
    info["heartbeat"] -= 3600                                 # a worker that died an hour ago
    (tmp_path / "run" / "lease.json").write_text(json.dumps(info))
    code = ("import sys, time; from soundclr.runs import lease; t = float(sys.argv[1]);\n"
            "time.sleep(max(0, t - time.time()));\n"
            "c = lease.take_lease(sys.argv[2], stale_seconds=30); print('won' if c else 'lost')")
    start = time.time() + 2.0
    procs = [subprocess.Popen([sys.executable, "-c", code, str(start), str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
             for _ in range(6)]
    answers = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert answers.count("won") == 1, answers


# -- workers on a grid -------------------------------------------------------------------------
def _train_cmd(root, results, *extra):
    return [sys.executable, "-m", "soundclr", "train", "--preset", "quick", "--dataset", "synthetic", "--data-root", str(root),
            "--epochs", "2", "--warmup-epochs", "1", "--batch-size", "32", "--schemes", "ce,hybrid", "--folds", "1,2",
            "--seeds", "0", "--results", str(results), "--device", "cpu", "--quiet", *extra]


def _finished_lines(output: str) -> list[str]:
    return [line.split("] ", 1)[1].split(":")[0] for line in output.splitlines() if line.startswith("[") and ": final " in line]


def _metrics(results):
    out = {}
    for m in sorted(results.glob("synthetic/main/*/metrics.jsonl")):
        out[m.parent.name] = [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in m.read_text().splitlines()]
    return out


def test_three_workers_train_each_run_once_and_match_one(synthetic_root, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen(_train_cmd(synthetic_root, tmp_path / "shared"), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=900) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outputs]
    trained = [name for out, _ in outputs for name in _finished_lines(out)]
    assert len(trained) == 4 and len(set(trained)) == 4, trained          # 4 runs, each trained by one worker
    assert sum(1 for out, _ in outputs if _finished_lines(out)) >= 2       # the work was shared
    one = subprocess.run(_train_cmd(synthetic_root, tmp_path / "alone"), env=env, capture_output=True, text=True, timeout=900)
    assert one.returncode == 0, one.stderr[-2000:]
    assert _metrics(tmp_path / "shared") == _metrics(tmp_path / "alone")
    assert not list((tmp_path / "shared").rglob("lease.json"))            # every claim released
    # status: a finished grid
    entries = {e["experiment"]: e for e in run_status.status(tmp_path / "shared")}
    assert entries["main"]["runs"] == entries["main"]["finished"] == 4
    assert entries["main"]["todo"] == entries["main"]["running"] == entries["main"]["failed"] == []


def test_a_killed_worker_is_taken_over_and_the_run_resumes(synthetic_root, synthetic_bank, tmp_path):
    args = ["--preset", "quick", "--dataset", "synthetic", "--data-root", str(synthetic_root), "--epochs", "8",
            "--warmup-epochs", "1", "--batch-size", "32", "--schemes", "hybrid", "--folds", "1", "--device", "cpu",
            "--checkpoint-seconds", "0", "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1")      # the same threads in every process: the same float sums
    cmd = [sys.executable, "-m", "soundclr", "train", *args]
    victim = subprocess.Popen([*cmd, "--results", str(tmp_path / "r")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run_dir = None
    deadline = time.time() + 300
    while time.time() < deadline:
        found = list((tmp_path / "r").glob("synthetic/main/*/checkpoint.pt"))
        if found and len((found[0].parent / "metrics.jsonl").read_text().splitlines()) >= 3:
            run_dir = found[0].parent
            break
        time.sleep(0.05)
    assert run_dir is not None, "the worker never wrote a checkpoint"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert (run_dir / "lease.json").exists() and not (run_dir / "summary.json").exists()
    # its holder was on this host and is gone: stale at once, whatever its heartbeat's age (900 s by default)
    assert lease.holder_gone(lease.read_lease(run_dir))
    status = {e["experiment"]: e for e in run_status.status(tmp_path / "r")}["main"]
    assert len(status["stale"]) == 1 and not status["running"]
    # the same command again, at once and with the default staleness, takes the run over and resumes it
    taker = subprocess.run([*cmd, "--results", str(tmp_path / "r")], env=env, capture_output=True, text=True, timeout=600)
    assert taker.returncode == 0, taker.stderr[-2000:]
    assert (run_dir / "summary.json").exists() and not (run_dir / "lease.json").exists()
    whole = subprocess.run([*cmd, "--results", str(tmp_path / "whole")], env=env, capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr[-2000:]
    assert _metrics(tmp_path / "r") == _metrics(tmp_path / "whole")


def test_a_kill_during_a_checkpoint_write_loses_nothing(synthetic_root, synthetic_bank, tmp_path):
    """SIGKILL while checkpoint.pt is being replaced (its 3rd write: the data written, not yet renamed; the
    process announces the moment in .held-checkpoint.pt, so the kill waits on state, not on timing): the
    previous checkpoint stays whole, the rerun takes the run over at once, removes the temporary, and ends
    bit-identical to an uninterrupted run."""
    from soundclr.files import HOLD_ENV, is_temporary
    args = ["--preset", "quick", "--dataset", "synthetic", "--data-root", str(synthetic_root), "--epochs", "6",
            "--warmup-epochs", "1", "--batch-size", "32", "--schemes", "ce", "--folds", "1", "--device", "cpu",
            "--checkpoint-seconds", "0", "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "soundclr", "train", *args]
    victim = subprocess.Popen([*cmd, "--results", str(tmp_path / "r")], env={**env, HOLD_ENV: "checkpoint.pt:3"},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    held = None
    deadline = time.time() + 300
    while time.time() < deadline and victim.poll() is None:
        found = list((tmp_path / "r").glob("synthetic/main/*/.held-checkpoint.pt"))
        if found:
            held = found[0]
            break
        time.sleep(0.05)
    assert held is not None, victim.communicate()[1][-2000:]
    run_dir = held.parent
    temporary = Path(held.read_text())
    assert temporary.exists() and is_temporary(temporary.name)       # mid-write: the new data beside the old file
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    held.unlink()
    old = torch.load(run_dir / "checkpoint.pt", weights_only=False)   # the previous checkpoint, whole
    assert old["epoch"] == 2
    taker = subprocess.run([*cmd, "--results", str(tmp_path / "r")], env=env, capture_output=True, text=True, timeout=600)
    assert taker.returncode == 0, taker.stderr[-2000:]
    assert (run_dir / "summary.json").exists() and not temporary.exists()
    assert not [p for p in run_dir.iterdir() if is_temporary(p.name)]
    whole = subprocess.run([*cmd, "--results", str(tmp_path / "whole")], env=env, capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr[-2000:]
    assert _metrics(tmp_path / "r") == _metrics(tmp_path / "whole")


def test_status_shows_running_stale_failed_and_todo(synthetic_root, tmp_path, capsys):
    from soundclr import preset
    cfg = preset("quick", dataset="synthetic", data_root=str(synthetic_root), epochs=1, warmup_epochs=1)
    runs = grid(cfg, "toy", schemes=["ce"], folds=[1, 2, 3, 4], results=tmp_path)
    from soundclr.runs.grid import write_manifest
    write_manifest(runs)
    fresh = lease.take_lease(runs[0].directory, stale_seconds=60, epochs=1)
    stale = lease.take_lease(runs[1].directory, stale_seconds=0.01, epochs=1)
    held = lease.take_lease(runs[2].directory, stale_seconds=60)
    try:
        raise ValueError("setting lr=-1 is not valid")
    except ValueError as err:
        held.fail(err)
    time.sleep(0.05)
    # the stale claim is judged by the run's own configuration (900 s): make it old instead
    info = lease.read_lease(runs[1].directory)
    info["heartbeat"] -= 10_000
    (runs[1].directory / "lease.json").write_text(json.dumps(info))
    e = run_status.status(tmp_path, "synthetic", "toy")[0]
    assert e["runs"] == 4 and e["finished"] == 0
    assert [r["run"] for r in e["running"]] == [runs[0].directory.name]
    assert [r["run"] for r in e["stale"]] == [runs[1].directory.name]
    assert e["failed"][0]["error"] == "ValueError: setting lr=-1 is not valid"
    assert [r["run"] for r in e["todo"]] == [runs[3].directory.name]
    assert main(["status", "--results", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "synthetic/toy: 4 runs: 0 finished, 1 running, 1 stale, 1 failed, 1 to do" in text
    assert "failed   " in text and "setting lr=-1 is not valid" in text
    fresh.release()
    # a grid run skips the held and the failed run, and trains the others
    run_grid(runs, progress=False, verbose=False)
    assert [r.finished for r in runs] == [True, True, False, True]


def test_a_grid_can_wait_for_runs_held_elsewhere(synthetic_root, synthetic_bank, tmp_path):
    """wait=True: a run another worker holds is waited for; once that worker gives it up, this one trains it."""
    import threading

    from soundclr import preset
    cfg = preset("quick", dataset="synthetic", data_root=str(synthetic_root), epochs=1, warmup_epochs=1)
    runs = grid(cfg, "toy", schemes=["ce"], folds=[1, 2], results=tmp_path)
    other = lease.take_lease(runs[0].directory, stale_seconds=60)
    threading.Timer(1.5, other.release).start()          # the other worker stops after 1.5 s
    t0 = time.time()
    summaries = run_grid(runs, progress=False, verbose=False, bank=synthetic_bank, wait=True, poll_seconds=0.2)
    assert len(summaries) == 2 and all(r.finished for r in runs) and time.time() - t0 >= 1.5
    assert len(run_grid(runs, progress=False, verbose=False, bank=synthetic_bank)) == 2


def test_the_exit_status_says_what_is_unfinished(synthetic_root, tmp_path, capsys):
    """`soundclr train` exits 0 when every run of its shard is finished or held by another live worker (a worker
    of a SLURM array must not fail because its peers hold runs), and 1, naming the runs and the next step, when a
    run failed; a dead holder's run is trained, not skipped."""
    import socket

    from soundclr.runs.threads import start_time
    args = ["train", "--preset", "quick", "--dataset", "synthetic", "--data-root", str(synthetic_root), "--epochs", "1",
            "--warmup-epochs", "0", "--batch-size", "32", "--schemes", "ce", "--folds", "1,2", "--seeds", "0",
            "--results", str(tmp_path), "--device", "cpu", "--quiet"]
    from soundclr.config import preset
    cfg = preset("quick", dataset="synthetic", data_root=str(synthetic_root), epochs=1, warmup_epochs=0, batch_size=32,
                 device="cpu")
    one, two = grid(cfg, "main", schemes=["ce"], folds=[1, 2], seeds=[0], results=str(tmp_path))
    alive = {"host": socket.gethostname(), "pid": os.getpid(), "start": start_time(os.getpid()), "token": "t"}
    for run, info in ((one, alive), (two, {**alive, "pid": 2 ** 22 + 7, "start": "0"})):   # two: its holder is gone
        run.directory.mkdir(parents=True)
        (run.directory / "lease.json").write_text(json.dumps({**info, "heartbeat": time.time()}))
    assert main(args) == 0
    out = capsys.readouterr().out
    assert two.finished and not one.finished                   # the dead holder's run trained; the live one's left
    assert "1 run(s) are being trained by other live workers" in out and "--wait" in out
    # a failed run: exit 1, with the run's name and --retry-failed
    (one.directory / "lease.json").unlink()
    (one.directory / "failed.json").write_text(json.dumps({"error": "RuntimeError: planted", "time": time.time()}))
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "1 run(s) failed" in err and one.directory.name in err and "--retry-failed" in err
    assert main([*args, "--retry-failed"]) == 0 and one.finished


def test_a_full_disk_stops_the_run_cleanly_and_it_resumes_when_space_returns(synthetic_root, synthetic_bank, tmp_path,
                                                                            monkeypatch):
    """A checkpoint write that fails for lack of space (OSError ENOSPC injected at the file layer, in fsync, as a
    full disk reports a delayed write) stops the run with a message that says what to do; the previous checkpoint
    is intact, no failed.json marks the run, and the same grid run again finishes it, bit-identical to a run
    that never stopped (every metrics.jsonl value but seconds)."""
    import errno

    import torch

    from soundclr import files
    from soundclr.config import preset
    from soundclr.runs.grid import DiskFull
    cfg = preset("quick", dataset="synthetic", data_root=str(synthetic_root), epochs=4, warmup_epochs=1, batch_size=32,
                 device="cpu", checkpoint_seconds=0)
    runs = grid(cfg, "main", schemes=["ce"], folds=[1], seeds=[0], results=str(tmp_path / "r"))
    real_fsync, saves = os.fsync, []

    def full_on_the_third_checkpoint(fd):
        name = os.readlink(f"/proc/self/fd/{fd}")
        if ".checkpoint.pt." in name:
            saves.append(name)
            if len(saves) == 3:
                raise OSError(errno.ENOSPC, "No space left on device", name)
        return real_fsync(fd)
    monkeypatch.setattr(files.os, "fsync", full_on_the_third_checkpoint)
    with pytest.raises(DiskFull, match="Free some space and run the same command again"):
        run_grid(runs, progress=False, verbose=False, bank=synthetic_bank)
    run_dir = runs[0].directory
    assert torch.load(run_dir / "checkpoint.pt", weights_only=False)["epoch"] == 2      # the last complete one
    assert not (run_dir / "failed.json").exists() and not (run_dir / "lease.json").exists()
    assert not [p for p in run_dir.iterdir() if files.is_temporary(p.name)]              # no half-written file left
    monkeypatch.setattr(files.os, "fsync", real_fsync)                                   # space returns
    run_grid(runs, progress=False, verbose=False, bank=synthetic_bank)
    assert runs[0].finished
    whole = grid(cfg, "main", schemes=["ce"], folds=[1], seeds=[0], results=str(tmp_path / "whole"))
    run_grid(whole, progress=False, verbose=False, bank=synthetic_bank)
    assert _metrics(tmp_path / "r") == _metrics(tmp_path / "whole")


def test_one_worker_trains_each_synthetic_draw_on_its_own_clips(tmp_path):
    """A worker that trains runs of two synthetic draws in one process decodes each draw's folder: the same seed and
    settings on another draw's clips give another model (a bank keyed by the dataset's name alone once trained every
    draw on the first one's clips, and the draws study measured nothing)."""
    from soundclr.book.plan import make_plan
    runs = []
    for draw in (2, 3):
        plan = make_plan("synthetic", "quick", size="tiny", device="cpu", results=str(tmp_path / f"draw{draw}"),
                         data_root=str(tmp_path / "data"), folds=[1], seeds=[0], synthetic_draw=draw)
        runs += plan.main_runs(schemes=["ce"])
    run_grid(runs, progress=False, verbose=False)
    probs = [torch.load(r.directory / "outputs.pt", weights_only=False)["probs"] for r in runs]
    assert probs[0].shape == probs[1].shape and not torch.allclose(probs[0], probs[1])
    # and each equals the run trained alone, in a process that saw only its own draw
    alone = make_plan("synthetic", "quick", size="tiny", device="cpu", results=str(tmp_path / "alone"),
                      data_root=str(tmp_path / "data"), folds=[1], seeds=[0], synthetic_draw=3).main_runs(schemes=["ce"])
    run_grid(alone, progress=False, verbose=False)
    assert torch.equal(torch.load(alone[0].directory / "outputs.pt", weights_only=False)["probs"], probs[1])
