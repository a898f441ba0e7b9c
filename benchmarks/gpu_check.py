"""A GPU check of soundclr: one run, one table to paste into an issue (``make gpu-check``).

    python3 benchmarks/gpu_check.py                    # on a machine with an NVIDIA GPU (no venv needed)
    python3 benchmarks/gpu_check.py --device cpu --quick   # a smoke run of every code path on a CPU (< 1 min)

On a machine without CUDA it says so and exits 0. On CUDA it runs, in at most ``--budget``
seconds (default 420; a section that no longer fits is reported as skipped):

(a) the CUDA-only tests (the tests marked ``skipif(not torch.cuda.is_available())``), with pytest;
(b) bf16 autocast against fp32 (cuDNN's TF32 off): for each scheme (ce, supcon, hybrid), the same
    initial weights trained for a few steps on the same batches in both precisions through the
    library's own pipeline, model, loss and optimiser; the losses must agree within ``--tol``;
(b') bf16 against fp32 in *training* (``studies/bf16_training.py`` at the paper's input shapes): the same
    ResNet-50 runs (hybrid, five folds of the synthetic tuning draw, two seeds, 20 epochs) in both
    precisions, compared on the final and best-on-test accuracy with the fold-level interval; fails when
    that interval leaves +-5 points;
(c) ``torch.compile`` (the library's ``compile`` setting): the compiled model's losses against
    eager ones on the same steps (within ``--tol``), and both step times (in a subprocess with a
    time limit, so that a slow or broken compiler cannot hold up the rest);
(d) the paper preset's training steps on ResNet-50 (weights=None) at batch 128 in bf16: clips/s
    of the pipeline, each scheme, stage 2 and evaluation, and the peak GPU memory, measured by
    ``benchmarks/paper_cost.py`` (what ``make bench`` prints);
(e) two worker processes sharing the GPU, each training steps at the same time: their aggregate
    clips/s against one process alone;
(f) the GPU-hours of Table III on ESC-50 and UrbanSound8K at the speed measured in (d), with
    ``soundclr.book.cost`` (and its FLOP-based estimate beside them);
(g) DistributedDataParallel and SyncBatchNorm on the device, in the form one GPU allows: two gloo ranks sharing
    it (NCCL refuses two ranks on one GPU), each running half of a batch of 16 through the library's own
    ``wrap_distributed`` and ``gather_output``; the loss and gradient must equal one process's on the whole
    batch (ResNet-18, fp32, TF32 off: ResNet-50's gradient direction at random initialisation moves with
    the summation order alone, see (b));
(h) the pipeline profiled (``benchmarks/pipeline_profile.py``): operators dispatched per batch, their launch
    floor, and the GPU's busy share of the pipeline's wall time, which says whether the pipeline's share
    of the step (d) is launch- and host-bound or memory-bound.

Each row: the check, what was measured, and pass / FAIL or "number" (a measurement with no
target). The exit status is 1 when a check fails. The script puts the repository root on
``sys.path``, so it runs with any Python that has torch, torchaudio, torchvision, numpy, pandas,
soundfile (and librosa and pytest for the tests), without installing soundclr.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _p in (str(ROOT / "studies"), str(ROOT / "benchmarks"), str(ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)
# benchmarks/paper_cost.py re-executes itself with glibc's malloc settings when imported without them;
# here it is imported as a module, so its re-execution would restart this script instead.
os.environ.setdefault("SOUNDCLR_NO_REEXEC", "1")

import torch  # noqa: E402

SCHEMES = ("ce", "supcon", "hybrid")


# -- helpers ----------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rel_diff(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def fmt_losses(values: list[float]) -> str:
    return " ".join(f"{v:.4f}" for v in values)


def check_config(args, scheme: str, dataset: str = "esc50"):
    """The paper preset (weights none), with the quick run's smaller backbone when ``--quick``."""
    from soundclr import preset
    settings = dict(dataset=dataset, weights="none", scheme=scheme, device=args.device)
    if args.backbone:
        settings["backbone"] = args.backbone
    return preset("paper", **settings).resolved()


def make_batches(cfg, device: torch.device, batch: int, count: int, seed: int, layout: torch.memory_format):
    """``count`` training batches through the library's augmentation pipeline (fixed keys): int16 clips,
    each a tone of its class's frequency with a decaying envelope and noise, digital silence around it."""
    from soundclr.audio.pipeline import Pipeline
    sr, samples = cfg.data.sample_rate, cfg.data.clip_samples
    classes = max(2, min(50, batch // 2))            # every class has a positive in the batch
    gen = torch.Generator().manual_seed(seed)
    pipe = Pipeline.from_config(cfg).to(device).train()
    out = []
    for _ in range(count):
        labels = torch.arange(batch) % classes
        n = torch.randint(sr // 2, samples + 1, (batch, 1), generator=gen)
        at = (torch.rand(batch, 1, generator=gen) * (samples - n + 1)).long()
        t = torch.arange(samples).unsqueeze(0) - at
        inside = (t >= 0) & (t < n)
        tt = t.clamp(min=0).float() / sr
        freq = 110.0 * 1.07 ** labels.float().unsqueeze(1)
        decay = torch.rand(batch, 1, generator=gen) * 4 + 0.5
        sound = torch.sin(2 * torch.pi * freq * tt) * torch.exp(-tt * decay)
        sound = sound + 0.2 * torch.randn(batch, samples, generator=gen) * torch.exp(-tt * decay)
        amp = torch.rand(batch, 1, generator=gen) * 20000 + 3000
        waves = (sound * amp * inside).clamp(-32767, 32767).to(torch.int16)
        keys = torch.randint(0, 2**62, (batch,), generator=gen)
        with torch.no_grad():
            x = pipe(waves.to(device), torch.full((batch,), samples).to(device), keys=keys.to(device), validate=False)
        out.append((x.contiguous(memory_format=layout), labels.to(device)))
    return out


def build(cfg, device: torch.device, *, compiled: str | None = None, seed: int = 0):
    """Model (the library's build_model, layout, optional torch.compile) and its fused optimiser."""
    from soundclr.model import build_model
    from soundclr.train import make_optimizer
    from soundclr.train.runtime import memory_format_for
    torch.manual_seed(seed)
    layout = memory_format_for(device, compiled is not None)
    model = build_model(cfg, 50).to(device).to(memory_format=layout).train()
    net = torch.compile(model, backend=compiled) if compiled else model
    return model, net, make_optimizer(cfg, model.parameters(), cfg.optim.lr), layout


def train_step(cfg, net, opt, x, labels, bf16: bool, device: torch.device) -> torch.Tensor:
    """One stage-1 step on ready model inputs: the library's own :func:`soundclr.train.model_step`."""
    from soundclr.train import model_step
    return model_step(cfg, net, opt, x, labels, bf16=bf16)[0]


def flat_grads(model) -> dict[str, torch.Tensor]:
    """The gradient, flattened, of the heads (classifier, projection) and of the encoder."""
    parts: dict[str, list[torch.Tensor]] = {"heads": [], "encoder": []}
    for name, q in model.named_parameters():
        if q.grad is not None:
            parts["encoder" if name.startswith("encoder.") else "heads"].append(q.grad.detach().flatten().float())
    return {k: torch.cat(v) for k, v in parts.items() if v}


def cosines(a: dict, b: dict) -> dict[str, torch.Tensor]:
    return {k: torch.nn.functional.cosine_similarity(a[k], b[k], dim=0) for k in a}


def loss_and_grads(cfg, device, model, net, x, labels, bf16: bool, tf32: bool):
    from soundclr.train import scheme_loss
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = net(x)
        loss = scheme_loss(cfg, 1, out, labels)
        model.zero_grad(set_to_none=True)
        loss.backward()
    finally:
        torch.backends.cudnn.allow_tf32 = old
    return loss.detach(), flat_grads(model)


def lockstep(cfg, device: torch.device, model, opt, batches, runs) -> tuple[list[list[float]], dict[str, list[float]]]:
    """The two ways ``runs`` ((net, bf16 autocast, cuDNN TF32), twice) of computing the loss and the
    gradient, on the same weights and the same batch, for each batch in turn; the optimiser then steps
    with the second one's gradient (the way the library trains). Returns both runs' losses and the
    cosine similarity of the two gradients (heads, encoder) at each step. Comparing on the same weights
    keeps Adam's first, sign-like steps from amplifying rounding differences into different trajectories."""
    losses: list[list[torch.Tensor]] = [[], []]
    cos: dict[str, list[torch.Tensor]] = {}
    for x, labels in batches:
        grads = []
        for j, (net, bf16, tf32) in enumerate(runs):
            loss, g = loss_and_grads(cfg, device, model, net, x, labels, bf16, tf32)
            losses[j].append(loss)
            grads.append(g)
        for k, v in cosines(*grads).items():
            cos.setdefault(k, []).append(v)
        del grads
        opt.step()
    return [torch.stack(v).tolist() for v in losses], {k: torch.stack(v).tolist() for k, v in cos.items()}


def fmt_cos(cos: dict[str, list[float]]) -> str:
    return ", ".join(f"{k} {min(1.0, min(v)):.4f}" for k, v in sorted(cos.items(), key=lambda kv: kv[0] != "heads"))


class Table:
    def __init__(self):
        self.rows: list[tuple[str, str, str]] = []

    def add(self, check: str, result: str, verdict: str) -> None:
        self.rows.append((check, result, verdict))
        print(f"  ... {check}: {result} [{verdict}]", flush=True)

    @property
    def failed(self) -> bool:
        return any(v.startswith("FAIL") for _, _, v in self.rows)

    def markdown(self) -> str:
        lines = ["| check | result | pass/fail |", "|---|---|---|"]
        for c, r, v in self.rows:
            lines.append(f"| {c} | {r.replace('|', '/')} | {v} |")
        return "\n".join(lines)


# -- (a) the CUDA-only tests ------------------------------------------------------------------------
CUDA_SKIP = re.compile(r"@pytest\.mark\.skipif\(\s*not\s+torch\.cuda\.is_available\(\)[^\n]*\n(?:\s*@[^\n]*\n)*\s*def\s+(test_\w+)")


def cuda_only_tests() -> list[str]:
    nodes = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for name in CUDA_SKIP.findall(path.read_text()):
            nodes.append(f"tests/{path.name}::{name}")
    return nodes


def section_tests(args, device, table: Table, remaining: float) -> None:
    nodes = cuda_only_tests()
    if not nodes:
        table.add("CUDA-only tests", "none found (no test is marked skipif(not torch.cuda.is_available()))", "FAIL")
        return
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs", *nodes]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(10.0, min(240.0, remaining)))
    except subprocess.TimeoutExpired:
        table.add(f"CUDA-only tests ({len(nodes)}: {', '.join(n.split('::')[1] for n in nodes)})",
                  "timed out", "FAIL")
        return
    out = r.stdout + r.stderr
    summaries = [ln for ln in out.splitlines() if re.search(r"\d+ (passed|failed|skipped|errors?)\b.* in ", ln)]
    last = summaries[-1] if summaries else ""
    counts = {k: int(m.group(1)) if (m := re.search(rf"(\d+) {k}\b", last)) else 0
              for k in ("passed", "failed", "skipped", "errors?")}
    errors = counts["errors?"]
    summary = f"{counts['passed']} passed, {counts['failed']} failed, {errors} errors, {counts['skipped']} skipped " \
              f"in {time.perf_counter() - t0:.0f} s"
    if device.type == "cuda":
        ok = r.returncode == 0 and counts["passed"] == len(nodes)
    else:   # a CPU smoke run: they must be found and skipped
        ok = r.returncode == 0 and counts["skipped"] == len(nodes)
        summary += " (no CUDA: skipped is expected)"
    if not ok:
        print(out[-4000:], file=sys.stderr, flush=True)
    table.add(f"CUDA-only tests ({', '.join(n.split('::')[1] for n in nodes)})", summary, "pass" if ok else "FAIL")


# -- (b) bf16 against fp32 --------------------------------------------------------------------------
def layout_floor(cfg, device, model, x, labels) -> dict[str, float]:
    """How far two exact-in-principle fp32 gradients differ: the same weights in the other memory layout
    (another summation order), the yardstick for the bf16 figure. On an H200 (batch 128) it gave 0.9998,
    and bf16 against fp32 about 0.2-0.3 for the encoder, 0.89-0.99 for the heads, with the losses within
    0.05 %. The low encoder figure is not the uncentred dB input's fault (an earlier explanation here):
    on a CPU with AMX bf16, centring the input made the bf16 cosine smaller (0.13 against 0.26 for
    ResNet-50, CE), and two fp32 layouts already disagree there (0.93). A randomly initialised ResNet-50
    is chaotic at its first step, so any rounding moves its gradient's direction; whether bf16 *trains* as
    well is measured by training (section "train" here, and studies/bf16_training.py on the CPU)."""
    import copy
    other = torch.contiguous_format if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() \
        else torch.channels_last
    twin = copy.deepcopy(model).to(memory_format=other)
    _, a = loss_and_grads(cfg, device, model, model, x, labels, False, False)
    _, b = loss_and_grads(cfg, device, twin, twin, x.contiguous(memory_format=other), labels, False, False)
    model.zero_grad(set_to_none=True)
    del twin
    return {k: v.item() for k, v in cosines(a, b).items()}


def section_bf16(args, device, table: Table, remaining: float) -> None:
    for scheme in SCHEMES:
        cfg = check_config(args, scheme)
        model, net, opt, layout = build(cfg, device)
        batches = make_batches(cfg, device, args.batch, args.compare_steps, seed=1, layout=layout)
        floor = layout_floor(cfg, device, model, *batches[0])
        (fp32, bf16), cos = lockstep(cfg, device, model, opt, batches, [(net, False, False), (net, True, True)])
        del model, net, opt, batches
        worst = max(rel_diff(b, f) for b, f in zip(bf16, fp32))
        finite = all(v == v and abs(v) != float("inf") for v in bf16 + fp32)
        table.add(f"bf16 vs fp32, {scheme} loss ({args.compare_steps} steps, batch {args.batch}, same weights and batches)",
                  f"fp32 {fmt_losses(fp32)}; bf16 {fmt_losses(bf16)}; max rel. diff {100 * worst:.2f} % "
                  f"(tol {100 * args.tol:g} %); gradient cosine bf16 vs fp32 >= {fmt_cos(cos)} (fp32 vs fp32 in "
                  f"the other memory layout: {fmt_cos({k: [v] for k, v in floor.items()})})",
                  "pass" if finite and worst <= args.tol else "FAIL")
        if device.type == "cuda":
            torch.cuda.empty_cache()


def section_train(args, device, table: Table, remaining: float) -> None:
    """bf16 against fp32 in training: studies/bf16_training.py at the paper's input shapes (44.1 kHz, 128 mel
    bands, 3 channels) with ResNet-50 from random initialisation, the hybrid scheme, five folds of the
    synthetic tuning draw, two seeds, ``--train-epochs`` epochs per run, in both precisions; the row holds
    the comparison the study prints (bf16 minus fp32, fold-level interval, seed-to-seed spread)."""
    import tempfile

    import bf16_training as study
    settings = dict(weights="none", **study.schedule(args.train_epochs), batch_size=args.train_batch,
                    lr=1e-2)      # the CPU study's rate for ResNet-50 from scratch
    if args.backbone:
        settings["backbone"] = args.backbone
    folds = (1, 2) if args.quick else None
    with tempfile.TemporaryDirectory(prefix="gpu-check-train-") as tmp:
        spec = study.Study(results=Path(tmp), preset="quick" if args.quick else "paper", settings=tuple(settings.items()),
                           folds=folds, device=str(device))
        t0 = time.monotonic()
        c = study.measure(spec)
        seconds = time.monotonic() - t0
    f, b = c["final"], c["best"]
    i, j = f["interval"], b["interval"]
    table.add(f"bf16 vs fp32 in training ({'quick shapes' if args.quick else 'paper shapes'}, "
              f"{args.backbone or 'resnet50'}, hybrid, {c['runs']['folds']} folds x {c['runs']['seeds']} seeds x 2 "
              f"precisions, {args.train_epochs} epochs)",
              f"final accuracy fp32 {f['fp32']:.2f} %, bf16 {f['bf16']:.2f} %, bf16 - fp32 {i['effect']:+.2f} "
              f"[{i['low']:+.2f}, {i['high']:+.2f}] (corrected 95 %); best-on-test {j['effect']:+.2f} "
              f"[{j['low']:+.2f}, {j['high']:+.2f}]; SD same seed {f['sd_same_seed']:.2f} vs seed to seed "
              f"{f['sd_seed_to_seed']:.2f}; curves at most {c['curves']['max_abs_gap']:.2f} points apart; "
              f"{seconds:.0f} s", "number (a smoke run)" if args.quick else "pass" if c["verdict"]["equivalent"] else "FAIL")


# -- (c) torch.compile ------------------------------------------------------------------------------
def compile_child(args) -> dict:
    """In a subprocess: the model and its torch.compile'd self (same parameters) give the loss and the
    gradient on the same weights and batches (bf16 as the library uses it on CUDA); then each step is timed."""
    from soundclr.train.runtime import uses_bf16
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    cfg = check_config(args, "hybrid")     # hybrid: both heads, both losses
    bf16 = uses_bf16(cfg, device)
    t0 = time.perf_counter()
    model, net, opt, layout = build(cfg, device, compiled=args.compile_backend)
    batches = make_batches(cfg, device, args.batch, args.compare_steps, seed=2, layout=layout)
    ts = time.perf_counter()
    (eager, comp), cos = lockstep(cfg, device, model, opt, batches[:1], [(model, bf16, True), (net, bf16, True)])
    first = time.perf_counter() - ts                       # includes the compilation
    (e2, c2), cos2 = lockstep(cfg, device, model, opt, batches[1:], [(model, bf16, True), (net, bf16, True)])
    eager, comp = eager + e2, comp + c2
    cos = {k: v + cos2.get(k, []) for k, v in cos.items()}
    x, y = batches[0]

    def timing(n) -> float:
        for _ in range(args.warmup):
            train_step(cfg, n, opt, x, y, bf16, device)
        times = []
        for _ in range(args.steps):
            sync(device)
            ts = time.perf_counter()
            train_step(cfg, n, opt, x, y, bf16, device)
            sync(device)
            times.append(time.perf_counter() - ts)
        return statistics.median(times)

    t_comp = timing(net)
    t_eager = timing(model)
    return {"eager": eager, "compiled": comp, "cosine": cos, "first_compiled_step": first, "eager_step": t_eager,
            "compiled_step": t_comp, "seconds": time.perf_counter() - t0, "bf16": bf16}


def section_compile(args, device, table: Table, remaining: float) -> None:
    limit = max(20.0, min(args.compile_timeout, remaining))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "compile", *child_args(args)]
    name = f"torch.compile ({args.compile_backend}), hybrid, batch {args.batch}"
    try:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired as err:
        tail = (err.stderr or b"")[-2000:]
        print(tail.decode(errors="replace") if isinstance(tail, bytes) else tail, file=sys.stderr, flush=True)
        table.add(name, f"not finished within {limit:.0f} s (compilation included)", "FAIL")
        return
    res = last_json(r.stdout)
    if r.returncode != 0 or res is None:
        print(r.stdout[-2000:] + r.stderr[-6000:], file=sys.stderr, flush=True)
        err = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
        table.add(name, f"failed (exit {r.returncode}): {err[-1][:300] if err else 'no output'}", "FAIL")
        return
    worst = max(rel_diff(c, e) for c, e in zip(res["compiled"], res["eager"]))
    prec = "bf16" if res["bf16"] else "fp32"
    table.add(f"{name}, {prec}: loss vs eager ({args.compare_steps} steps, same weights and batches)",
              f"eager {fmt_losses(res['eager'])}; compiled {fmt_losses(res['compiled'])}; max rel. diff "
              f"{100 * worst:.2f} % (tol {100 * args.tol:g} %); gradient cosine >= {fmt_cos(res['cosine'])}",
              "pass" if worst <= args.tol else "FAIL")
    table.add(f"{name}, {prec}: step time (median of {args.steps})",
              f"compiled {1000 * res['compiled_step']:.1f} ms = {args.batch / res['compiled_step']:.0f} clips/s; eager "
              f"{1000 * res['eager_step']:.1f} ms = {args.batch / res['eager_step']:.0f} clips/s (x"
              f"{res['eager_step'] / res['compiled_step']:.2f}); first compiled step (compilation) "
              f"{res['first_compiled_step']:.0f} s", "number")


# -- (d) the paper preset's step, pipeline and memory (benchmarks/paper_cost.py) ---------------------
def section_paper(args, device, table: Table, remaining: float) -> dict:
    import paper_cost
    if args.backbone:   # --quick: the same measurement on a smaller network
        from soundclr.model import build_model
        paper_cost.build_model = lambda c, n: build_model(c.override(backbone=args.backbone), n)
    bf16 = device.type == "cuda"
    net = args.backbone or "resnet50"
    rates = {}
    for dataset, label in (("esc50", "ESC-50, 5 s clips"), ("us8k", "US8K, 4 s clips")):
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        r = paper_cost.measure(dataset, device, args.paper_batch, args.steps, args.warmup)
        rates[dataset] = r
        mem = ""
        if device.type == "cuda":
            mem = f"; peak {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB allocated, " \
                  f"{torch.cuda.max_memory_reserved(device) / 2**30:.1f} GiB reserved"
        table.add(f"paper step, {label}, {net}, batch {args.paper_batch}, {'bf16' if bf16 else 'fp32'}: clips/s",
                  f"CE {r['ce']:.0f}, SupCon {r['supcon']:.0f}, hybrid {r['hybrid']:.0f}, stage 2 {r['stage2']:.0f}, "
                  f"evaluation {r['evaluate']:.0f}{mem}", "number")
    best = min(r["pipeline"] for r in rates.values())
    # the CE step runs the pipeline too, so pipeline time / step time = step rate / pipeline rate
    shares = {d: r["ce"] / r["pipeline"] for d, r in rates.items()}
    table.add("the pipeline's share of a CE training step (CE clips/s / pipeline clips/s)",
              ", ".join(f"{'ESC-50' if d == 'esc50' else 'US8K'} {100 * v:.1f} %" for d, v in shares.items())
              + "; design target <= 5 %", ("pass" if max(shares.values()) <= 0.05 else "FAIL")
              if device.type == "cuda" else "number")
    target = "; target >= 3000 clips/s on CUDA" if device.type == "cuda" else ""
    table.add(f"pipeline (augmentation + log-mel), batch {args.paper_batch}: clips/s",
              f"ESC-50 {rates['esc50']['pipeline']:.0f}, US8K {rates['us8k']['pipeline']:.0f}{target}",
              ("pass" if best >= 3000 else "FAIL") if device.type == "cuda" else "number")
    return rates


# -- (e) two processes sharing the device -------------------------------------------------------------
def worker_child(args) -> None:
    """A training process: warm up, then on each 'run SECONDS' line train for that long and report."""
    from soundclr.train.runtime import uses_bf16
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    cfg = check_config(args, "ce")
    bf16 = uses_bf16(cfg, device)
    model, net, opt, layout = build(cfg, device)
    batches = make_batches(cfg, device, args.paper_batch, 2, seed=3, layout=layout)
    for i in range(max(2, args.warmup)):
        train_step(cfg, net, opt, *batches[i % 2], bf16, device)
    sync(device)
    print(json.dumps({"ready": True}), flush=True)
    while True:
        line = sys.stdin.readline()
        if not line.startswith("run"):
            break
        seconds = float(line.split()[1])
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            train_step(cfg, net, opt, *batches[n % 2], bf16, device)
            sync(device)
            n += 1
        dt = time.perf_counter() - t0
        print(json.dumps({"steps": n, "seconds": dt, "rate": n * args.paper_batch / dt}), flush=True)


def section_workers(args, device, table: Table, remaining: float) -> None:
    import queue
    import tempfile
    import threading
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "worker", *child_args(args)]
    env = dict(os.environ)
    if device.type == "cpu":
        env["OMP_NUM_THREADS"] = "1"
    logs = [tempfile.TemporaryFile(mode="w+") for _ in range(2)]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                              env=env) for log in logs]
    lines: list[queue.Queue] = [queue.Queue() for _ in procs]

    def pump(p, q) -> None:
        for line in p.stdout:
            q.put(line)
        q.put(None)

    for p, q in zip(procs, lines):
        threading.Thread(target=pump, args=(p, q), daemon=True).start()
    deadline = time.monotonic() + max(20.0, min(180.0, remaining))

    def read(i: int) -> dict:
        while True:
            try:
                line = lines[i].get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError("a worker did not answer in time") from None
            if line is None:
                logs[i].seek(0)
                raise RuntimeError(f"a worker ended (exit {procs[i].wait()}): {logs[i].read()[-1500:]}")
            res = last_json(line)
            if res is not None:
                return res

    def send(i: int, text: str) -> None:
        procs[i].stdin.write(text)
        procs[i].stdin.flush()

    name = f"2 processes on one {'GPU' if device.type == 'cuda' else 'CPU'} (CE, {args.backbone or 'resnet50'}, " \
           f"batch {args.paper_batch})"
    try:
        read(0), read(1)                               # both warmed up and waiting
        send(0, f"run {args.worker_seconds}\n")
        alone = read(0)
        send(0, f"run {args.worker_seconds}\n")
        send(1, f"run {args.worker_seconds}\n")
        both = [read(0), read(1)]
        aggregate = sum(b["rate"] for b in both)
        ratio = aggregate / alone["rate"]
        table.add(f"{name}: aggregate clips/s vs 1 process",
                  f"1 process {alone['rate']:.0f}; 2 processes {both[0]['rate']:.0f} + {both[1]['rate']:.0f} = "
                  f"{aggregate:.0f} (x{ratio:.2f}; {args.worker_seconds:g} s each, concurrently); pass: >= x0.8",
                  "pass" if ratio >= 0.8 else "FAIL")
    except Exception as err:  # noqa: BLE001 - reported in the table
        table.add(f"{name}", f"failed: {type(err).__name__}: {str(err)[-300:]}", "FAIL")
    finally:
        for p in procs:
            try:
                p.stdin.close()
            except OSError:
                pass
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in logs:
            log.close()


# -- (f) Table III's GPU-hours --------------------------------------------------------------------------
# -- (g) DDP and SyncBatchNorm ----------------------------------------------------------------------
DDP_BATCH = 16


def ddp_setup(args, scheme: str, device: torch.device):
    """The DDP check's config, model (train mode on CUDA, eval on a CPU: no SyncBatchNorm there) and one
    augmented batch of ``DDP_BATCH`` clips; fp32, TF32 off."""
    from soundclr.model import build_model
    from soundclr.train.runtime import memory_format_for
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cfg = check_config(argparse.Namespace(**{**vars(args), "backbone": args.backbone or "resnet18"}), scheme)
    layout = memory_format_for(device, False)
    torch.manual_seed(0)
    model = build_model(cfg, 50).to(device).to(memory_format=layout)
    model.train(device.type == "cuda")
    x, labels = make_batches(cfg, device, DDP_BATCH, 1, seed=5, layout=layout)[0]
    return cfg, model, x, labels


def ddp_child(args) -> None:
    """One of two ranks (gloo, both on the same device): the library's DDP wrapping, its gathered loss on
    the whole batch from this rank's half, and the gradient, saved to ``--ddp-out``."""
    import torch.distributed as dist

    from soundclr.train import scheme_loss
    from soundclr.train.runtime import gather_output, wrap_distributed
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device.index or 0)
    else:
        torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{args.ddp_init}", rank=args.ddp_rank, world_size=2)
    out = {}
    for scheme in SCHEMES:
        cfg, model, x, labels = ddp_setup(args, scheme, device)
        net = wrap_distributed(model, device, scheme)
        per = DDP_BATCH // 2
        half = slice(args.ddp_rank * per, (args.ddp_rank + 1) * per)
        loss = scheme_loss(cfg, 1, gather_output(net(x[half]), 2), labels)
        loss.backward()
        sync_bn = sum(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
        out[scheme] = {"loss": loss.detach().cpu(), "grads": {k: v.cpu() for k, v in flat_grads(model).items()},
                       "sync_bn": sync_bn}
    torch.save(out, args.ddp_out)
    dist.destroy_process_group()


def section_ddp(args, device, table: Table, remaining: float) -> None:
    """Two processes, gloo, on the one device (NCCL refuses two ranks on one GPU): the library's DDP with
    SyncBatchNorm (CUDA) must give the single-process loss and gradient on the whole batch."""
    import tempfile

    from soundclr.train import scheme_loss
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, OMP_NUM_THREADS="1")
        procs = [subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", "ddp", *child_args(args),
                                   "--ddp-rank", str(r), "--ddp-init", f"{tmp}/init", "--ddp-out", f"{tmp}/rank{r}.pt"],
                                  cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for r in range(2)]
        try:
            logs = [p.communicate(timeout=max(60.0, min(240.0, remaining)))[0] for p in procs]
        finally:
            for p in procs:
                p.kill()
        if any(p.returncode for p in procs):
            raise RuntimeError("a DDP rank failed: " + " | ".join(log.strip()[-400:] for log in logs))
        ranks = [torch.load(f"{tmp}/rank{r}.pt", weights_only=False) for r in range(2)]
    form = ("2 ranks (gloo) sharing one GPU, SyncBatchNorm in train mode" if device.type == "cuda" else
            "2 ranks (gloo) on the CPU, BatchNorm in eval mode (no SyncBatchNorm on a CPU)")
    for scheme in SCHEMES:
        cfg, model, x, labels = ddp_setup(args, scheme, device)
        loss = scheme_loss(cfg, 1, model(x), labels)
        loss.backward()
        single = flat_grads(model)
        worst_loss = max(rel_diff(float(r[scheme]["loss"]), float(loss)) for r in ranks)
        cos = {k: min(1.0, *(float(torch.nn.functional.cosine_similarity(r[scheme]["grads"][k], single[k].cpu(), dim=0))
                               for r in ranks)) for k in single}
        sync_bn = ranks[0][scheme]["sync_bn"]
        ok = worst_loss <= 1e-4 and min(cos.values()) >= 0.999 and (sync_bn > 0) == (device.type == "cuda")
        table.add(f"ddp {scheme}: {cfg.model.backbone}, batch {DDP_BATCH}, fp32",
                  f"{form}, {sync_bn} SyncBatchNorm layers: loss vs one process on the whole batch "
                  f"{worst_loss:.1e} rel; gradient cosine " + ", ".join(f"{k} {v:.5f}" for k, v in cos.items()),
                  "pass" if ok else "FAIL (want loss within 1e-4 and cosine >= 0.999)")


def section_profile(args, device, table: Table) -> None:
    """The pipeline's kernels against its wall time (``benchmarks/pipeline_profile.py``): whether its share
    of the step is launch- and host-bound (CUDA graphs or fusion would help) or memory-bound."""
    from pipeline_profile import measure
    m = measure(device, args.paper_batch, 3 if args.quick else 5)
    busy = (f"; {m['kernels']} kernels, GPU busy {m['busy'] * 1e3:.2f} ms = {m['busy'] / m['wall']:.0%} of the wall time"
            if m["busy"] is not None else "")
    table.add(f"pipeline profile, batch {args.paper_batch}",
              f"{m['wall'] * 1e3:.2f} ms per batch ({m['rate']:,.0f} clips/s), {m['ops']} operators dispatched (launch floor at "
              f"5 us each: {m['floor'] / m['wall']:.0%} of the wall time){busy}", "number")


def section_hours(args, device, table: Table, rates: dict | None) -> None:
    from soundclr import preset
    from soundclr.book import cost
    if not rates:
        table.add("Table III GPU-hours", "not computed: the paper step (d) was not measured", "FAIL")
        return
    unit = "GPU-hours" if device.type == "cuda" else "device-hours (this CPU)"
    for dataset, label in (("esc50", "ESC-50"), ("us8k", "US8K")):
        r = rates[dataset]
        train = statistics.fmean([r["ce"], r["supcon"], r["hybrid"]])
        speed = cost.Throughput(train=train, stage2=r["stage2"], evaluate=r["evaluate"], label="measured")
        row = cost.cost_table(dataset, speed).loc["main"]
        cfg = preset("paper", dataset=dataset)
        flops = cost.flops_per_clip(cfg)["train"]
        est = cost.cost_table(dataset, cost.estimate(cfg, args.tflops)).loc["main", "hours"]
        net = f" ({args.backbone} rates)" if args.backbone else ""
        mfu = f", {100 * train * flops / 1e12 / args.peak_tflops:.1f} % of a {args.peak_tflops:g}-TFLOP/s peak" \
            if device.type == "cuda" else ""
        table.add(f"Table III, {label}: {unit} at the measured speed{net}",
                  f"{row['hours']:,.1f} h for {int(row['runs'])} runs ({int(row['train']):,} training clips at "
                  f"{train:.0f} clips/s = {train * flops / 1e12:.0f} TFLOP/s of ResNet-50 training{mfu}; FLOP estimate "
                  f"at {args.tflops:g} TFLOP/s: {est:,.1f} h)", "number")


# -- the run ------------------------------------------------------------------------------------------
def last_json(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def child_args(args) -> list[str]:
    out = ["--device", args.device, "--batch", str(args.batch), "--paper-batch", str(args.paper_batch),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--compare-steps", str(args.compare_steps),
           "--compile-backend", args.compile_backend]
    if args.backbone:
        out += ["--backbone", args.backbone]
    return out


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="auto (CUDA when there is one, else: say so and exit 0), cuda, cuda:N, cpu")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: the tiny backbone, batch 4, 1-2 steps, aot_eager compile on a CPU (rough numbers)")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds for the whole check (default 420)")
    ap.add_argument("--tol", type=float, default=0.02, help="relative loss tolerance of bf16 and compile (default 0.02)")
    ap.add_argument("--only", default="tests,bf16,train,paper,hours,workers,ddp,profile,compile",
                    help="sections to run, comma-separated (default: all)")
    ap.add_argument("--backbone", default=None, help="run the checks on this backbone instead of ResNet-50")
    ap.add_argument("--batch", type=int, default=None, help="batch of the bf16 and compile checks (default 128)")
    ap.add_argument("--paper-batch", type=int, default=None, help="batch of the paper step and the workers (default 128)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 10)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3)")
    ap.add_argument("--compare-steps", type=int, default=None, help="lockstep training steps compared (default 3)")
    ap.add_argument("--compile-backend", default=None, help="torch.compile backend (default inductor; aot_eager with --quick on a CPU)")
    ap.add_argument("--compile-timeout", type=float, default=240.0, help="seconds for the compile check (default 240)")
    ap.add_argument("--worker-seconds", type=float, default=None, help="seconds each worker trains per measurement (default 8)")
    ap.add_argument("--tflops", type=float, default=400.0,
                    help="sustained TFLOP/s of the FLOP-based hours estimate (default 400)")
    ap.add_argument("--train-epochs", type=int, default=None, help="epochs per run of the training check (default 20)")
    ap.add_argument("--train-batch", type=int, default=32, help="batch of the training check (default 32)")
    ap.add_argument("--peak-tflops", type=float, default=989.0,
                    help="the GPU's dense bf16 peak, for the model FLOP utilisation (default 989: H100/H200 SXM)")
    ap.add_argument("--child", choices=("compile", "worker", "ddp"), help=argparse.SUPPRESS)
    ap.add_argument("--ddp-rank", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--ddp-init", default="", help=argparse.SUPPRESS)
    ap.add_argument("--ddp-out", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    q = args.quick
    args.backbone = args.backbone or ("tiny" if q else None)
    args.batch = args.batch or (4 if q else 128)
    args.paper_batch = args.paper_batch or (4 if q else 128)
    args.steps = args.steps or (2 if q else 10)
    args.warmup = args.warmup or (1 if q else 3)
    args.compare_steps = args.compare_steps or (2 if q else 3)
    args.worker_seconds = args.worker_seconds or (1.5 if q else 8.0)
    args.train_epochs = args.train_epochs or (2 if q else 20)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        if args.child == "compile":
            print(json.dumps(compile_child(args)), flush=True)
        elif args.child == "ddp":
            ddp_child(args)
        else:
            worker_child(args)
        return 0
    start = time.monotonic()
    if args.device == "auto":
        if not torch.cuda.is_available():
            print(f"gpu-check: no CUDA GPU on this machine (torch {torch.__version__}, torch.cuda.is_available() is "
                  "False): nothing to check. Run `make gpu-check` on a machine with an NVIDIA GPU "
                  "(or `python3 benchmarks/gpu_check.py --device cpu --quick` for a smoke run of the script).")
            return 0
        args.device = "cuda"
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu-check: --device cuda asked for, but torch.cuda.is_available() is False on this machine.")
        return 1
    args.compile_backend = args.compile_backend or ("inductor" if device.type == "cuda" or not args.quick else "aot_eager")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True     # as soundclr.train does on CUDA
        p = torch.cuda.get_device_properties(device)
        name = f"{p.name}, {p.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
    else:
        name = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    header = (f"soundclr gpu-check on {device.type}: {name}; torch {torch.__version__}, Python "
              f"{platform.python_version()}, soundclr commit {commit}"
              + ("; --quick: a smoke run (tiny backbone, small batches): timings are not the paper's" if args.quick else ""))
    print(header, flush=True)
    import importlib.util
    missing = [m for m in ("soundfile", "librosa", "pytest", "pandas") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"note: Python packages missing here: {', '.join(missing)} (soundfile: every check imports soundclr.data; "
              "librosa, pytest: the CUDA-only tests; pandas: the hours). `pip install` them (versions: constraints.txt) "
              "for a full table; the checks that need them are reported as errors below.", flush=True)

    table = Table()
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    rates = None
    # cost of each section in seconds on an H200 (rough), to skip what would no longer fit in the budget
    need = {"tests": 30, "bf16": 40, "train": 90, "paper": 60, "hours": 10, "workers": 45, "ddp": 30, "profile": 15,
            "compile": 60}
    for section in ("tests", "bf16", "train", "paper", "hours", "workers", "ddp", "profile", "compile"):
        if section not in sections:
            continue
        remaining = args.budget - (time.monotonic() - start)
        if remaining < need[section] and not args.quick:
            table.add(section, f"skipped: {remaining:.0f} s of the {args.budget:g} s budget left", "FAIL (not run)")
            continue
        t0 = time.monotonic()
        print(f"[{t0 - start:5.0f} s] {section} ...", flush=True)
        try:
            if section == "tests":
                section_tests(args, device, table, remaining)
            elif section == "bf16":
                section_bf16(args, device, table, remaining)
            elif section == "train":
                section_train(args, device, table, remaining)
            elif section == "paper":
                rates = section_paper(args, device, table, remaining)
            elif section == "hours":
                section_hours(args, device, table, rates)
            elif section == "workers":
                section_workers(args, device, table, remaining)
            elif section == "ddp":
                section_ddp(args, device, table, remaining)
            elif section == "profile":
                section_profile(args, device, table)
            else:
                section_compile(args, device, table, remaining)
        except Exception as err:  # noqa: BLE001 - every section reports into the table
            traceback.print_exc()
            table.add(section, f"error: {type(err).__name__}: {str(err)[:300]}", "FAIL")
        if device.type == "cuda":
            torch.cuda.empty_cache()
    total = time.monotonic() - start
    print()
    print(header)
    print()
    print(table.markdown())
    print()
    print(f"{sum(not v.startswith('FAIL') for _, _, v in table.rows)} of {len(table.rows)} rows pass or measured; "
          f"{total:.0f} s in all. fp32 above means float32 with cuDNN's TF32 off; bf16 is the library's autocast "
          f"(h, z and the losses in float32). Gradient cosines (numbers, not held to a "
          f"tolerance): heads = classifier and projection, encoder = the ResNet; the other-layout figure is how far "
          f"fp32 rounding alone moves the gradient's direction at this random initialisation (weights=None).")
    return 1 if table.failed else 0


if __name__ == "__main__":
    sys.exit(main())
