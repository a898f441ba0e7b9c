"""Threads that fit the machine: every process that trains registers in a per-host registry and takes
max(1, cores // live workers) threads; OMP_NUM_THREADS (or SLURM_CPUS_PER_TASK) wins; `soundclr train
--workers N` starts N workers. No timings here: benchmarks/oversubscription.py measures."""
import os
import subprocess
import sys

import pytest
import torch

from soundclr.cli import build_parser, main
from soundclr.runs import threads as worker
from soundclr.runs.pool import run_workers

CHILD = """
import sys
from soundclr.runs import threads as worker
worker.register()
print(worker.thread_share(), flush=True)
sys.stdin.read()          # stay alive (registered) until the test closes stdin or kills us
"""


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A private registry, 8 cores, no thread variables in the environment."""
    monkeypatch.setenv(worker.REGISTRY_ENV, str(tmp_path / "registry"))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "SLURM_CPUS_PER_TASK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(worker, "machine_cores", lambda: 8)
    worker._unregister_all()            # claims an earlier test left unreleased registered this process elsewhere
    yield tmp_path / "registry"
    worker._unregister_all()


def _child(env_cores: int = 8) -> subprocess.Popen:
    code = f"from soundclr.runs import threads as worker; worker.machine_cores = lambda: {env_cores}\n" + CHILD
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK")}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def test_two_registered_workers_each_take_half_the_cores(registry):
    assert worker.thread_share() == 8                       # alone
    worker.register()
    child = _child()
    try:
        assert int(child.stdout.readline()) == 4            # it sees this process: 8 // 2
        assert worker.other_workers() == 1
        assert worker.thread_share() == 4                   # and this process sees it
        assert len(list(registry.glob("*.json"))) == 2
    finally:
        child.kill()                                        # SIGKILL: its entry stays behind, stale
        child.wait()
    assert len(list(registry.glob("*.json"))) == 2
    assert worker.thread_share() == 8                       # a dead process's entry is ignored ...
    assert len(list(registry.glob("*.json"))) == 1          # ... and removed
    worker.unregister()
    assert not list(registry.glob("*.json"))


def test_an_entry_removed_at_exit_and_a_reused_pid_not_counted(registry):
    child = _child()
    assert int(child.stdout.readline()) == 8
    assert worker.other_workers() == 1
    child.stdin.close()                                     # a normal exit removes its entry
    child.wait()
    assert not list(registry.glob("*.json"))
    # An entry naming a live pid with another start time is a dead process's pid reused.
    worker.register()
    entry = next(registry.glob("*.json"))
    ghost = entry.with_name(entry.name.replace(f"-{os.getpid()}.", f"-{os.getppid()}."))
    ghost.write_text('{"pid": %d, "start": "1"}' % os.getppid())
    assert worker.other_workers() == 0 and not ghost.exists()


def test_fit_threads_sets_torch_and_omp_num_threads_wins(registry, monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(worker, "machine_cores", lambda: 2)
        worker.register()
        child = _child(env_cores=2)
        try:
            assert int(child.stdout.readline()) == 1
            assert worker.fit_threads() == 1 and torch.get_num_threads() == 1
            monkeypatch.setenv("OMP_NUM_THREADS", "3")         # the user's setting wins over the share
            assert worker.thread_share() == 3 and worker.worker_threads(2) == 3
            monkeypatch.delenv("OMP_NUM_THREADS")
            monkeypatch.setenv("SLURM_CPUS_PER_TASK", "6")     # so does SLURM's (the task's own cores)
            assert worker.thread_share() == 6 and worker.worker_threads(2) == 3
            monkeypatch.delenv("SLURM_CPUS_PER_TASK")
            assert worker.worker_threads(2) == 1               # 2 cores // (2 new + 1 registered), at least 1
        finally:
            child.kill()
            child.wait()
    finally:
        torch.set_num_threads(before)


def test_an_unwritable_registry_is_no_error(registry, monkeypatch, tmp_path):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv(worker.REGISTRY_ENV, str(tmp_path / "file" / "registry"))
    worker.register()
    assert worker.thread_share() == 8
    worker.unregister()


def test_run_workers_fixes_each_workers_threads(registry, monkeypatch, capsys):
    code = "import os; print(os.environ['OMP_NUM_THREADS'])"
    run_workers([sys.executable, "-c", code], 2)
    assert capsys.readouterr().out.count("] 4\n") == 2         # 8 cores // 2 workers
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    run_workers([sys.executable, "-c", code], 2)
    assert capsys.readouterr().out.count("] 3\n") == 2         # the user's OMP_NUM_THREADS wins


def test_train_takes_workers():
    parser = build_parser()
    assert parser.parse_args(["train"]).workers == 1
    assert parser.parse_args(["train", "--workers", "3"]).workers == 3
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["train", "--workers", "0"])
    assert stop.value.code == 2


def test_workers_under_torchrun_is_a_usage_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "--workers", "2", "--results", str(tmp_path)]) == 2
    assert "torchrun" in capsys.readouterr().err


def test_train_with_two_workers_trains_each_run_once(synthetic_root, tmp_path):
    args = [sys.executable, "-m", "soundclr", "train", "--preset", "quick", "--dataset", "synthetic", "--data-root",
            str(synthetic_root), "--epochs", "1", "--warmup-epochs", "1", "--schemes", "ce", "--folds", "1,2",
            "--device", "cpu", "--results", str(tmp_path / "r"), "--workers", "2"]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "[worker 1]" in r.stdout and "[worker 2]" in r.stdout
    assert len(list((tmp_path / "r").glob("synthetic/main/*/summary.json"))) == 2
    assert r.stdout.count(": final ") >= 2 and not list((tmp_path / "r").rglob("lease.json"))
