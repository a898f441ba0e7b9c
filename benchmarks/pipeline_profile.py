"""Where the augmentation pipeline's time goes (issue 24, item 5): one training batch profiled with
``torch.profiler``, paper settings (44.1 kHz, 5-s clips, 1024/512 STFT, 128 mels, masks, 3 channels).

Prints, for one device and batch:

1. the wall time per batch and clips/s (the median of ``--repeats`` batches after a warm-up);
2. the operators the pipeline dispatches per batch (each is at least one kernel launch on a GPU) and
   the launch floor they set: operators x ``--launch-us`` (about 5 us per launch from Python on a
   recent NVIDIA GPU), as a share of the wall time;
3. on CUDA, the GPU's busy time (the sum of the kernels' durations) against the wall time: a busy
   share well under 1 says the pipeline is bound by launches and host work, not by arithmetic;
4. the operators with the most self time (CPU; on CUDA the kernels' time).

The design's target is a pipeline under 5 % of a training step. On the H200 ``make gpu-check`` measured
23,597 clips/s for the pipeline and 3,265 for the CE step: about 14 %.

    python benchmarks/pipeline_profile.py                    # CPU or CUDA, batch 128
    python benchmarks/pipeline_profile.py --quick            # a smoke run (batch 8, 1 repeat)
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default: cuda if available)")
    ap.add_argument("--batch", type=int, default=None, help="clips per batch (default 128; 8 with --quick)")
    ap.add_argument("--repeats", type=int, default=None, help="timed batches (default 5; 1 with --quick)")
    ap.add_argument("--launch-us", type=float, default=5.0, help="microseconds per kernel launch (default 5)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: batch 8, 1 repeat")
    args = ap.parse_args(argv)
    args.batch = args.batch or (8 if args.quick else 128)
    args.repeats = args.repeats or (1 if args.quick else 5)
    return args


def batch_inputs(cfg, batch: int, device: torch.device):
    """int16 clips of random length (half a clip to a whole one) with digital silence around the sound,
    and one augmentation key per clip: what a training batch gives the pipeline."""
    gen = torch.Generator().manual_seed(0)
    samples = cfg.data.clip_samples
    lengths = torch.randint(samples // 2, samples + 1, (batch,), generator=gen)
    waves = (torch.randn(batch, samples, generator=gen) * 3000).to(torch.int16)
    waves[torch.arange(samples) >= lengths[:, None]] = 0
    keys = torch.randint(0, 2**62, (batch,), generator=gen)
    return waves.to(device), lengths.to(device), keys.to(device)


def measure(device: torch.device, batch: int, repeats: int, launch_us: float = 5.0) -> dict:
    """Profile one pipeline batch: wall seconds, operators dispatched, their launch floor, the GPU's kernels
    and busy seconds (CUDA), and the profiler's operator table."""
    from soundclr import preset
    from soundclr.audio.pipeline import Pipeline
    cfg = preset("paper", dataset="esc50", weights="none").resolved()
    pipe = Pipeline.from_config(cfg).to(device).train()
    waves, lengths, keys = batch_inputs(cfg, batch, device)

    def one() -> None:
        with torch.no_grad():
            pipe(waves, lengths, keys=keys, validate=False)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    one()                                   # warm-up: allocations, cuFFT plans, mel filters
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        one()
        walls.append(time.perf_counter() - t0)
    wall = statistics.median(walls)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # the profiler's note on cycles: one cycle here
        with profile(activities=activities) as prof:
            one()
    events = prof.events()
    # operators called from Python (not those an operator calls inside itself): what dispatches work
    ops = [e for e in events if e.name.startswith("aten::") and (e.cpu_parent is None or
                                                                not e.cpu_parent.name.startswith("aten::"))]
    kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
    return {"wall": wall, "rate": batch / wall, "ops": len(ops), "floor": len(ops) * launch_us * 1e-6,
            "kernels": len(kernels), "busy": sum(k.device_time_total for k in kernels) * 1e-6 if kernels else None,
            "table": prof.key_averages().table(sort_by="self_cuda_time_total" if kernels else "self_cpu_time_total",
                                               row_limit=12)}


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    m = measure(device, args.batch, args.repeats, args.launch_us)
    wall = m["wall"]
    print(f"pipeline profile on {device} ({torch.get_num_threads()} threads), batch {args.batch}, torch {torch.__version__}")
    print(f"wall per batch      : {wall * 1e3:9.2f} ms   ({m['rate']:,.0f} clips/s; median of {args.repeats})")
    print(f"operators per batch : {m['ops']:9d}      launch floor at {args.launch_us:g} us each: {m['floor'] * 1e3:.2f} ms "
          f"= {m['floor'] / wall:.1%} of this wall time")
    if m["busy"] is not None:
        print(f"GPU kernels         : {m['kernels']:9d}      busy {m['busy'] * 1e3:.2f} ms = {m['busy'] / wall:.1%} of the "
              f"wall time ({'launch- and host-bound' if m['busy'] / wall < 0.5 else 'arithmetic- or memory-bound'})")
    print(m["table"])
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))
    sys.exit(main())
