"""Throughput of the augmentation and feature pipeline (paper Sec. III-A, Fig. 2).

Prints, on one device and in one run:

1. clips/s of ``soundclr.audio.Pipeline`` in training mode with the paper's settings
   (44.1 kHz, 220500-sample clips, 1024/512 Hamming STFT, 128 mels, masks, 3 channels)
   at each batch size;
2. clips/s of a per-clip implementation of the same steps the way the released code does
   it (librosa + numpy, one clip at a time), measured in turns with (1) so that both see
   the same machine load, and the ratio. A pause separates the turns: thread pools
   (numpy's OpenBLAS, torch's OpenMP) spin for a while after their last call and would
   otherwise slow down whichever runs next;
3. the pipeline's cost as a fraction of one ResNet-50 training step (forward, backward,
   Adam step; torchvision resnet50, weights=None, 50 classes, input 3 x 128 x 431).

Usage::

    python benchmarks/pipeline.py                       # CPU or CUDA, batches 32 and 128
    python benchmarks/pipeline.py --quick               # a smoke run
    python benchmarks/pipeline.py --device cuda --batch-sizes 128,256

Targets: on a 2-core CPU the pipeline should reach >= 3x the per-clip baseline's clips/s
and cost <= 5 % of a ResNet-50 step; on CUDA it should feed >= 3000 clips/s.

Large CPU tensors are slowed down by glibc handing memory back to the system after each
batch (every new tensor then page-faults). The script re-executes itself with
MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ and MALLOC_TOP_PAD_ set unless they are
already set (--no-reexec to skip); export them for training on a CPU too.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

PAUSE = 0.3   # seconds between timed turns, for idle thread pools to stop spinning
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "8589934592", "MALLOC_TRIM_THRESHOLD_": "8589934592",
              "MALLOC_TOP_PAD_": "1073741824"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    parser.add_argument("--batch-sizes", default="32,128", help="comma-separated pipeline batch sizes (default 32,128)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of each measurement (default 5)")
    parser.add_argument("--baseline-clips", type=int, default=16,
                        help="clips the per-clip baseline processes per repeat (default 16)")
    parser.add_argument("--resnet-batch", type=int, default=None,
                        help="ResNet-50 batch (default: 8 on CPU, the largest pipeline batch on CUDA)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the CPUs this process may use)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: batch 32 only, 2 repeats, 4 baseline clips, ResNet-50 batch 2 (rough timings)")
    parser.add_argument("--no-reexec", action="store_true", help="do not re-execute with the malloc settings")
    args = parser.parse_args()
    if args.quick:
        args.batch_sizes, args.repeats, args.baseline_clips = "32", 2, 4
        args.resnet_batch = args.resnet_batch or 2
    return args


def reexec_with_malloc_settings(args: argparse.Namespace) -> None:
    missing = {k: v for k, v in MALLOC_ENV.items() if k not in os.environ}
    if not missing or args.no_reexec or not sys.platform.startswith("linux"):
        return
    print("re-executing with " + " ".join(f"{k}={v}" for k, v in MALLOC_ENV.items())
          + " (glibc would otherwise return memory after each large tensor; export these for CPU training too)",
          flush=True)
    os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, **MALLOC_ENV})


def main() -> None:
    args = parse_args()
    reexec_with_malloc_settings(args)
    # The baseline is one clip in one process on one core, as in one DataLoader worker; the
    # "ideal workers" column multiplies it by the cores. numpy's BLAS would otherwise use
    # every core for librosa's mel product and spin between calls.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

    import numpy as np
    import torch

    from soundclr.audio.pipeline import Pipeline
    from soundclr.config import preset

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(args.threads or cpus)
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    cfg = preset("paper", dataset="esc50").resolved()
    sr, clip = cfg.data.sample_rate, cfg.data.clip_samples
    feat, aug = cfg.features, cfg.augment

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} torch threads, {cpus} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "")
    print(f"settings: {sr} Hz, {clip}-sample clips, n_fft {feat.n_fft}, hop {feat.hop_length}, {feat.window}, "
          f"{feat.n_mels} mels, trim {aug.trim}, scale {aug.scale_max if aug.scale else 'off'}, "
          f"masks {aug.freq_masks}x{aug.freq_mask_width} + {aug.time_masks}x{aug.time_mask_width}, "
          f"{feat.channels} channels")

    # ESC-50-like clips: 5 s int16 with a 1-5 s sound, digital silence around it.
    rng = np.random.default_rng(0)
    n_clips = max(batch_sizes + [args.baseline_clips])
    waves = np.zeros((n_clips, clip), np.int16)
    for i in range(n_clips):
        n = int(rng.integers(sr, clip))
        at = int(rng.integers(0, clip - n + 1))
        t = np.arange(n) / sr
        sound = np.sin(2 * np.pi * rng.uniform(100, 4000) * t) * np.exp(-t * rng.uniform(0.5, 5))
        sound += 0.3 * rng.standard_normal(n) * np.exp(-t * rng.uniform(0.5, 5))
        waves[i, at:at + n] = (sound / np.abs(sound).max() * rng.uniform(3000, 30000)).astype(np.int16)
    lengths = np.full(n_clips, clip)

    # -- the released code's way: one clip at a time, librosa + numpy ------------------------
    import librosa

    def per_clip(x: np.ndarray) -> np.ndarray:
        y = x.astype(np.float32) / 32768
        nonzero = np.flatnonzero(y)                                       # trim exact zeros
        if len(nonzero):
            y = y[nonzero[0]:nonzero[-1] + 1]
        s = aug.scale_max ** rng.uniform(-1, 1)                           # random scale, np.interp
        n = max(int(round(len(y) * s)), 1)
        y = np.interp(np.arange(n) / s, np.arange(len(y)), y).astype(np.float32)
        if n < clip:                                                      # random pad / crop
            left = int(rng.integers(0, clip - n + 1))
            y = np.pad(y, (left, clip - n - left), mode="edge")
        else:
            left = int(rng.integers(0, n - clip + 1))
            y = y[left:left + clip]
        power = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=feat.n_fft, hop_length=feat.hop_length,
                                               window=feat.window, n_mels=feat.n_mels, power=2.0)
        spec = librosa.power_to_db(power, ref=np.max, amin=1e-10, top_db=feat.top_db)
        for _ in range(aug.freq_masks):                                   # masks, numpy
            w = int(rng.integers(0, aug.freq_mask_width + 1))
            f0 = int(rng.integers(0, feat.n_mels - w + 1))
            spec[f0:f0 + w] = 0
        for _ in range(aug.time_masks):
            w = int(rng.integers(0, aug.time_mask_width + 1))
            t0 = int(rng.integers(0, spec.shape[1] - w + 1))
            spec[:, t0:t0 + w] = 0
        return np.stack([spec] * feat.channels)

    per_clip(waves[0])                                                    # librosa's first-call set-up

    def time_baseline() -> float:
        start = time.perf_counter()
        for i in range(args.baseline_clips):
            per_clip(waves[i])
        return time.perf_counter() - start

    # -- the batched pipeline, interleaved with the baseline -----------------------------------
    pipeline = Pipeline.from_config(cfg).to(device).train()
    device_waves = torch.from_numpy(waves).to(device)
    device_lengths = torch.from_numpy(lengths).to(device)
    pipeline_rate: dict[int, float] = {}
    baseline_times: list[float] = []
    for batch in batch_sizes:
        x, n = device_waves[:batch], device_lengths[:batch]
        out = pipeline(x, n)
        sync()
        assert out.shape == (batch, feat.channels, feat.n_mels, pipeline.frames), out.shape
        calls = max(1, 256 // batch)          # a turn: a few consecutive batches, as in training
        times = []
        for _ in range(args.repeats):
            time.sleep(PAUSE)
            start = time.perf_counter()
            for _ in range(calls):
                pipeline(x, n)
            sync()
            times.append((time.perf_counter() - start) / calls)
            time.sleep(PAUSE)
            baseline_times.append(time_baseline())
        pipeline_rate[batch] = batch / statistics.median(times)
    baseline_rate = args.baseline_clips / statistics.median(baseline_times)

    # -- one ResNet-50 training step ---------------------------------------------------------------
    import torchvision

    resnet_batch = args.resnet_batch or (8 if device.type == "cpu" else max(batch_sizes))
    model = torchvision.models.resnet50(weights=None, num_classes=50).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    inputs = torch.randn(resnet_batch, 3, feat.n_mels, pipeline.frames, device=device)
    labels = torch.randint(0, 50, (resnet_batch,), device=device)
    use_bf16 = device.type == "cuda"
    if use_bf16:
        model = model.to(memory_format=torch.channels_last)
        inputs = inputs.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss = torch.nn.functional.cross_entropy(model(inputs), labels)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    step()
    sync()
    step_times = []
    for _ in range(max(2, args.repeats // 2)):
        start = time.perf_counter()
        step()
        sync()
        step_times.append(time.perf_counter() - start)
    resnet_per_clip = statistics.median(step_times) / resnet_batch

    # -- report ----------------------------------------------------------------------------------
    print()
    print(f"per-clip baseline (librosa + numpy, 1 process, OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}): "
          f"{baseline_rate:8.1f} clips/s "
          f"({1000 / baseline_rate:.1f} ms/clip; {cpus} worker processes would give at most {cpus * baseline_rate:.1f})")
    print(f"ResNet-50 training step (forward + backward + Adam, batch {resnet_batch}"
          f"{', bf16 autocast, channels_last' if use_bf16 else ', fp32'}): "
          f"{statistics.median(step_times):.2f} s/step = {1000 * resnet_per_clip:.1f} ms/clip"
          + (f" (CPU: batch {resnet_batch}, scaled per clip)" if device.type == "cpu" else ""))
    print()
    print(f"{'batch':>6} {'pipeline clips/s':>17} {'ms/clip':>8} {'x baseline':>11} {'x ideal workers':>16} "
          f"{'% of ResNet-50 step':>20}")
    for batch, rate in pipeline_rate.items():
        fraction = (1 / rate) / resnet_per_clip
        print(f"{batch:>6} {rate:>17.1f} {1000 / rate:>8.2f} {rate / baseline_rate:>11.1f} "
              f"{rate / (cpus * baseline_rate):>16.1f} {100 * fraction:>19.2f}%")
    best = max(pipeline_rate.values())
    print()
    if device.type == "cpu":
        ratio = min(pipeline_rate.values()) / baseline_rate
        fraction = max((1 / r) / resnet_per_clip for r in pipeline_rate.values())
        print(f"target >= 3x the per-clip baseline: {'met' if ratio >= 3 else 'MISSED'} ({ratio:.1f}x at worst)")
        print(f"target <= 5 % of a ResNet-50 step: {'met' if fraction <= 0.05 else 'MISSED'} "
              f"({100 * fraction:.2f} % at worst)")
    else:
        print(f"target >= 3000 clips/s: {'met' if best >= 3000 else 'MISSED'} ({best:.0f} clips/s at best)")
    if hasattr(os, "getloadavg"):
        print(f"load average at the end {os.getloadavg()[0]:.1f} (other processes on the machine skew both timings)")


if __name__ == "__main__":
    main()
