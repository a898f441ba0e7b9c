"""What the paper preset costs on this device: measured throughput, peak memory, GPU-hours.

    python benchmarks/paper_cost.py                   # this machine's device (CUDA when there is one)
    python benchmarks/paper_cost.py --device cuda --batch 128 --steps 20

For ResNet-50 at the paper's settings (44.1 kHz, 1024/512 STFT, 128 mels, 3 channels, bf16
autocast and channels-last on CUDA, fused AdamW) it times, on 5-s ESC-50 clips and 4-s US8K
clips: the augmentation pipeline, a training step of each scheme (pipeline, model, loss,
backward, optimiser), a stage-2 step (frozen encoder forward, linear classifier), and an
evaluation (model forward). It prints one table of clips per second and peak memory, then the
hours of each grid of the paper-size plan (Table III, II, I, Fig. 3, the whole book) at the
measured rates, with the FLOP-based estimate beside them (``soundclr.book.cost``): a table to
paste into an issue. Medians of ``--steps`` timed steps after ``--warmup`` untimed ones.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None and os.environ.get("SOUNDCLR_NO_REEXEC") is None:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="8589934592", MALLOC_TRIM_THRESHOLD_="8589934592",
               MALLOC_TOP_PAD_="1073741824", SOUNDCLR_NO_REEXEC="1")
    os.execve(sys.executable, [sys.executable, *sys.argv], env)

import torch

from soundclr import preset
from soundclr.audio.pipeline import Pipeline
from soundclr.book import cost
from soundclr.model import build_model
from soundclr.train import make_optimizer, train_step
from soundclr.train.runtime import resolve_device, uses_bf16


def timed(fn, steps: int, warmup: int, device) -> float:
    """Median seconds of ``fn`` over ``steps`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def measure(dataset: str, device, batch: int, steps: int, warmup: int) -> dict:
    cfg = preset("paper", dataset=dataset, weights="none", device=str(device)).resolved()
    bf16 = uses_bf16(cfg, device)
    torch.manual_seed(0)
    samples = cfg.data.clip_samples
    waves = (torch.randn(batch, samples, device=device) * 3000).clamp(-32767, 32767).to(torch.int16)
    lengths = torch.full((batch,), samples, device=device)
    labels = torch.arange(batch, device=device) % 10
    keys = torch.arange(batch, device=device)
    pipe = Pipeline.from_config(cfg).to(device).train()
    out = {"pipeline": batch / timed(lambda: pipe(waves, lengths, keys=keys, validate=False), steps, warmup, device)}
    for scheme in ("ce", "supcon", "hybrid", "stage2", "evaluate"):
        c = cfg.override(scheme="supcon" if scheme == "stage2" else "ce" if scheme == "evaluate" else scheme)
        model = build_model(c, 50).to(device).to(memory_format=torch.channels_last)
        params = model.classifier.parameters() if scheme == "stage2" else model.parameters()
        opt = make_optimizer(c, params, 1e-4)
        model.train(scheme not in ("stage2", "evaluate"))

        stage = 2 if scheme == "stage2" else 1

        def step():
            if scheme == "evaluate":
                with torch.no_grad():
                    x = pipe(waves, lengths, validate=False).contiguous(memory_format=torch.channels_last)
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                        model(x)
                return
            train_step(c, model, pipe, opt, waves, lengths, labels, keys, stage=stage, bf16=bf16)

        if scheme == "evaluate":
            pipe.eval()
        out[scheme] = batch / timed(step, steps, warmup, device)
        pipe.train()
    return out


def peak_memory(device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB (CUDA, allocated)"
    import resource
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB (process, resident)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch", type=int, default=None, help="default: 128 on CUDA, 8 on a CPU")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default: 20 on CUDA, 3 on a CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 5 on CUDA, 1 on a CPU)")
    ap.add_argument("--tflops", type=float, default=60.0, help="the sustained rate of the FLOP-based estimate")
    args = ap.parse_args()
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    gpu = device.type == "cuda"
    batch, steps, warmup = args.batch or (128 if gpu else 8), args.steps or (20 if gpu else 3), args.warmup or (5 if gpu else 1)
    print(f"soundclr paper-preset cost on {device.type}: {name}; ResNet-50, batch {batch}, "
          f"{'bf16' if uses_bf16(preset('paper'), device) else 'fp32'}, torch {torch.__version__}\n", flush=True)
    rates = {d: measure(d, device, batch, steps, warmup) for d in ("esc50", "us8k")}
    print("| clips/s | pipeline | train, CE | train, SupCon | train, hybrid | stage 2 | evaluation |")
    print("|---|---|---|---|---|---|---|")
    for d, r in rates.items():
        print(f"| {d} ({'5 s' if d == 'esc50' else '4 s'} clips) | " + " | ".join(
            f"{r[k]:.1f}" for k in ("pipeline", "ce", "supcon", "hybrid", "stage2", "evaluate")) + " |")
    print(f"\npeak memory: {peak_memory(device)}\n")
    estimate = {d: cost.estimate(preset("paper", dataset=d), args.tflops) for d in ("esc50", "esc10", "us8k")}
    print("| device-hours | ESC-50 measured | ESC-50 estimate | ESC-10 measured | UrbanSound8K measured | "
          "UrbanSound8K estimate |")
    print("|---|---|---|---|---|---|")
    tables = {}
    for d in ("esc50", "esc10", "us8k"):
        r = rates["us8k" if d == "us8k" else "esc50"]
        speed = cost.Throughput(train=statistics.fmean([r["ce"], r["supcon"], r["hybrid"]]), stage2=r["stage2"],
                                evaluate=r["evaluate"], label="measured")
        tables[d] = (cost.cost_table(d, speed), cost.cost_table(d, estimate[d]))
    for key, label in (("main", "Table III"), ("alpha", "Table II"), ("masking", "Table I"), ("ablation", "Fig. 3"),
                       ("the whole book", "the whole book")):
        cells = [tables["esc50"][0].loc[key, "hours"], tables["esc50"][1].loc[key, "hours"],
                 tables["esc10"][0].loc[key, "hours"], tables["us8k"][0].loc[key, "hours"], tables["us8k"][1].loc[key, "hours"]]
        print(f"| {label} | " + " | ".join(f"{c:,.1f}" for c in cells) + " |")
    print(f"\nmeasured: at the mean training rate of the three schemes; estimate: the model's FLOPs at "
          f"{args.tflops:g} TFLOP/s sustained (soundclr.book.cost). Runs: "
          + ", ".join(f"{d} {int(tables[d][0].loc['the whole book', 'runs'])}" for d in tables) + " for the whole book.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
