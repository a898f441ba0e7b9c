"""benchmarks/gpu_check.py (`make gpu-check`): without a GPU it says so and exits 0; its CPU smoke run
(--device cpu --quick) goes through every section and prints the one table."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH="")   # the script must find soundclr by itself
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd="/", capture_output=True, text=True, timeout=timeout,
                          env=env)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: gpu-check would run")
def test_no_gpu_says_so_and_exits_0():
    r = run()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no CUDA GPU" in r.stdout


def test_finds_the_cuda_only_tests():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert "tests/test_augment.py::test_cpu_and_cuda_agree" in module.cuda_only_tests()


def test_cpu_smoke_run_prints_every_row():
    r = run("--device", "cpu", "--quick")
    out = r.stdout
    assert r.returncode in (0, 1), out + r.stderr       # 1: a check missed its target on this CPU (timings, bf16 on CPU)
    table = out[out.index("| check | result | pass/fail |"):]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| check")]
    for check in ("CUDA-only tests", "bf16 vs fp32, ce", "bf16 vs fp32, supcon", "bf16 vs fp32, hybrid",
                  "bf16 vs fp32 in training", "the pipeline's share", "torch.compile", "paper step, ESC-50", "paper step, US8K", "pipeline", "2 processes",
                  "Table III, ESC-50", "Table III, US8K", "pipeline profile"):
        assert any(check in row for row in rows), (check, table)
    bad = ("error:", "failed:", "failed (exit", "not finished", "timed out", "skipped:")
    broken = [row for row in rows if any(s in row for s in bad)]
    assert not broken, "\n".join(broken) + "\n" + r.stderr[-3000:]
    assert "torch.compile (aot_eager), hybrid, batch 4, fp32: loss vs eager" in table
    assert "| pass |" in next(row for row in rows if "loss vs eager" in row)
    for scheme in ("ce", "supcon", "hybrid"):         # DDP on 2 gloo ranks gives the single-process gradient
        assert "| pass |" in next(row for row in rows if row.startswith(f"| ddp {scheme}:")), table
