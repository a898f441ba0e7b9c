"""Clips per second of one training step, per scheme and backbone (a benchmark, not a test).

    python benchmarks/train_step.py                    # CPU: resnet18 and resnet50, paper features
    python benchmarks/train_step.py --device cuda --batch 128

A step is the whole training step of ``soundclr.train``: augmentation pipeline on
int16 waves -> model -> loss -> backward -> AdamW. Printed per scheme:
clips/s, the hybrid's cost relative to cross-entropy (target: within 5 %), and a
stage-2 step of the two-stage scheme (frozen encoder under no_grad, linear
classifier only) relative to a stage-1 step (target: at most 40 %).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None and os.environ.get("SOUNDCLR_NO_REEXEC") is None:
    # glibc returns freed memory too eagerly for large conv batches on CPU; re-run with it kept.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="8589934592", MALLOC_TRIM_THRESHOLD_="8589934592",
               MALLOC_TOP_PAD_="1073741824", SOUNDCLR_NO_REEXEC="1")
    os.execve(sys.executable, [sys.executable, *sys.argv], env)

import torch

from soundclr import preset
from soundclr.audio import Pipeline
from soundclr.schemes import PAPER_SCHEMES as SCHEMES
from soundclr.model import build_model
from soundclr.train import make_optimizer, train_step
from soundclr.train.runtime import memory_format_for, uses_bf16


def make_step(cfg, scheme: str, batch: int, device, stage: int = 1):
    """A closure running one full training step of ``scheme`` (stage 2: the frozen-encoder step): the
    library's own step, :func:`soundclr.train.train_step`, on a batch of random int16 waves."""
    cfg = cfg.override(scheme=scheme, lr=1e-4)
    torch.manual_seed(0)
    layout = memory_format_for(device, False)
    model = build_model(cfg, 50).to(device).to(memory_format=layout)
    pipe = Pipeline.from_config(cfg).to(device).train()
    bf16 = uses_bf16(cfg, device)
    params = model.classifier.parameters() if stage == 2 else model.parameters()
    opt = make_optimizer(cfg, params, cfg.optim.lr)
    waves = (torch.randn(batch, cfg.data.clip_samples, device=device) * 3000).clamp(-32767, 32767).to(torch.int16)
    lengths = torch.full((batch,), cfg.data.clip_samples, device=device)
    labels = torch.arange(batch, device=device) % 16
    keys = torch.arange(batch, device=device)
    model.train(stage == 1)

    def one():
        train_step(cfg, model, pipe, opt, waves, lengths, labels, keys, stage=stage, bf16=bf16, memory_format=layout)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return one


def step_times(cfg, batch: int, device, repeats: int) -> dict[str, float]:
    """Median seconds per step of each scheme, measured round-robin so that drift in the
    machine's speed (allocator warm-up, other load) affects every scheme alike."""
    steps = {s: make_step(cfg, s, batch, device) for s in SCHEMES}
    steps["stage2"] = make_step(cfg, "supcon", batch, device, stage=2)
    for one in steps.values():
        one()  # warm-up
    times = {s: [] for s in steps}
    for _ in range(repeats):
        for s, one in steps.items():
            t0 = time.perf_counter()
            one()
            times[s].append(time.perf_counter() - t0)
    return {s: statistics.median(v) for s, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--backbones", default="resnet18,resnet50")
    ap.add_argument("--batch", type=int, default=None, help="default: 128 on CUDA, 16 on CPU")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    device = torch.device(args.device)
    batch = args.batch or (128 if device.type == "cuda" else 16)
    print(f"device {device}, batch {batch}, torch {torch.__version__}, threads {torch.get_num_threads()}; "
          "paper features: 44.1 kHz, 220500-sample clips, 128 mels x 431 frames, 3 channels; median of "
          f"{args.repeats} steps per scheme, round-robin, after one warm-up each")
    for backbone in args.backbones.split(","):
        cfg = preset("paper", dataset="esc50", backbone=backbone, weights="none").resolved()
        t = step_times(cfg, batch, device, args.repeats)
        for s, v in t.items():
            print(f"{backbone:9s} {s:7s} {batch / v:8.2f} clips/s  ({v / batch:.3f} s per clip)")
        print(f"{backbone:9s} hybrid / ce step time: {t['hybrid'] / t['ce']:.3f} (target <= 1.05)")
        print(f"{backbone:9s} stage 2 / stage 1 (supcon) step time: {t['stage2'] / t['supcon']:.3f} (target <= 0.40)")


if __name__ == "__main__":
    main()
