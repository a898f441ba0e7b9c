"""A tiny grid as a SLURM job array of 3 tasks, on a real single-node SLURM (tests/slurm_cluster.py),
on the CPU: every run is trained exactly once, with the same results as one process."""
import json
import os
import re
import subprocess
import sys

import pytest
from slurm_cluster import SingleNodeSlurm, why_not_available

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = why_not_available()
    if reason:
        if os.environ.get("SOUNDCLR_REQUIRE_SLURM", "") not in ("", "0"):
            pytest.fail(f"SOUNDCLR_REQUIRE_SLURM is set but SLURM cannot run here: {reason}")
        pytest.skip(reason)
    with SingleNodeSlurm(tmp_path_factory.mktemp("slurm")) as c:
        yield c


def _grid(root):
    return ["--preset", "quick", "--dataset", "synthetic", "--data-root", str(root), "--epochs", "2", "--warmup-epochs", "1",
            "--batch-size", "32", "--schemes", "ce,hybrid", "--folds", "1,2", "--seeds", "0,1", "--device", "cpu"]


def _metrics(results):
    return {m.parent.name: [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in m.read_text().splitlines()]
            for m in sorted(results.glob("synthetic/main/*/metrics.jsonl"))}


def test_a_job_array_trains_each_run_once(cluster, synthetic_root, tmp_path):
    results = tmp_path / "results"
    r = subprocess.run([sys.executable, "-m", "soundclr", "slurm", "--workers", "3", "--gpus-per-worker", "0",
                        "--cpus-per-worker", "1", "--time", "00:20:00", "--submit", "--", *_grid(synthetic_root),
                        "--results", str(results)], env=cluster.env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    job = re.search(r"submitted job array (\d+)", r.stdout).group(1)
    script = next((results / "slurm").glob("*.sbatch")).read_text()
    assert "#SBATCH --array=0-2" in script and "#SBATCH --requeue" in script and "--gres" not in script
    cluster.wait_for_job(job, timeout=900)
    outputs = sorted((results / "slurm").glob(f"*-{job}_*.out"))
    assert len(outputs) == 3, outputs
    text = {p.name: p.read_text() for p in outputs}
    trained = [m for t in text.values() for m in re.findall(r"\] (\w+ fold \d seed \d): final", t)]
    assert len(trained) == 8 and len(set(trained)) == 8, text       # 2 schemes x 2 folds x 2 seeds, each once
    assert all("task " in t for t in text.values())                  # every task started
    status = subprocess.run([sys.executable, "-m", "soundclr", "status", "--results", str(results), "--json"],
                            capture_output=True, text=True)
    main = json.loads(status.stdout)[0]
    assert main["runs"] == main["finished"] == 8 and not main["running"] and not main["failed"]
    # the same grid in one process, with the threads of a task (1): the same numbers
    one = subprocess.run([sys.executable, "-m", "soundclr", "train", *_grid(synthetic_root), "--results", str(tmp_path / "one"),
                          "--quiet"], env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=900)
    assert one.returncode == 0, one.stderr[-2000:]
    assert _metrics(results) == _metrics(tmp_path / "one")
