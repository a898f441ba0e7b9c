"""LOOPDOC
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
import torch

from ..audio.pipeline import Pipeline
from ..config import Config
from ..data.bank import load_bank
from ..files import atomic_torch_save, atomic_write_bytes, atomic_write_json, read_json
from ..losses import cross_entropy_loss, hybrid_loss, supcon_loss
from ..model import build_model
from . import record
from .evaluate import _cacheable, _lengths_cpu, _supcon_options, evaluate
from .preflight import preflight
from .record import _jsonl, is_finished, read_metrics
from .runtime import _Stage2Output, _allreduce_grads, _gather_output, distributed, memory_format_for, resolve_device, uses_bf16



KEY_HIGH = 2**62


def check_bank(bank, cfg: Config) -> None:
    """A bank passed in by the caller must be the configuration's dataset at its sample rate."""
    if bank.dataset != cfg.data.dataset or bank.sample_rate != cfg.data.sample_rate:
        raise ValueError(f"the WaveBank given holds {bank.dataset} at {bank.sample_rate} Hz but the configuration asks for "
                         f"{cfg.data.dataset} at {cfg.data.sample_rate} Hz: pass the matching bank or none")


# -- schedule ---------------------------------------------------------------------
def lr_factor(epoch: int, warmup: int, gamma: float) -> float:
    """The released code's schedule (its WarmUpExponentialLR): warm-up lr x (0.1 + 0.9 (e+1)/W)
    for epochs e < W (= 0.1 + 0.09 (e+1) for W = 10, ending at x 1.0), then x gamma^(e-W)."""
    if epoch < warmup:
        return 0.1 + 0.9 * (epoch + 1) / warmup
    return gamma ** (epoch - warmup)


def make_optimizer(cfg: Config, params, lr: float) -> torch.optim.Optimizer:
    """AdamW (released code) or Adam (paper text); the fused kernel (one launch for every
    parameter) wherever torch has one, which is CPU and CUDA."""
    params = [p for p in params]
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    cls = torch.optim.AdamW if cfg.optim.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=lr, weight_decay=cfg.optim.weight_decay, fused=fused or None)


# -- the one place where the schemes differ ------------------------------------------
def scheme_loss(cfg: Config, stage: int, out, labels: torch.Tensor) -> torch.Tensor:
    scheme, o = cfg.run.scheme, cfg.optim
    if scheme == "ce" or stage == 2:
        return cross_entropy_loss(out.logits, labels)                       # Eq. 2
    if scheme == "supcon":
        return supcon_loss(out.projection, labels, o.temperature,           # Eq. 3 (stage 1)
                           form=o.supcon_form, no_positive=o.no_positive)
    return hybrid_loss(out.projection, out.logits, labels, o.alpha, o.temperature,  # Eq. 4
                       form=o.supcon_form, no_positive=o.no_positive)


# -- the run ----------------------------------------------------------------------------
def train_run(cfg: Config, run_dir: Path | str, *, bank=None, progress: bool = True,
              stop_after_epoch: int | None = None, log: Callable[[str], None] | None = None,
              on_epoch: Callable[[dict], None] | None = None, log_seconds: float = 30.0) -> dict:
    """Train one run into ``run_dir`` and return its summary.

    A finished run (``summary.json`` present) is not retrained: its summary is
    returned. A run with a checkpoint resumes from it. ``progress`` shows a progress
    bar; ``log`` receives a line at most every ``log_seconds`` (and at the end);
    ``on_epoch`` is called with each epoch's metrics row (a worker's heartbeat).
    ``stop_after_epoch`` simulates a kill after that many epochs (for tests of resumption).

    Before any work, :func:`preflight` checks the settings, the run folder, the dataset (when no
    ``bank`` is given) and the weights.
    """
    cfg = cfg.resolved()
    cfg.validate()
    run_dir = Path(run_dir)
    if is_finished(run_dir):
        summary = read_json(run_dir / "summary.json")
        if summary.get("identity") != cfg.identity():
            raise RuntimeError(f"{run_dir} holds a finished run of a different configuration ({summary.get('identity')} != "
                               f"{cfg.identity()}): use another results folder or delete it")
        return summary
    preflight(cfg, results=run_dir.parent, data=bank is None)
    s = _setup(cfg, run_dir, bank, progress)
    name = f"{cfg.data.dataset} {cfg.run.scheme} fold {cfg.run.test_fold} seed {cfg.run.seed}"
    bar = None
    if progress and s.rank == 0:
        from tqdm.auto import tqdm
        bar = tqdm(total=s.total_epochs, initial=s.start_epoch, desc=name, unit="epoch")
    last_log = time.time()
    for epoch in range(s.start_epoch, s.total_epochs):
        row = _train_epoch(s, epoch)
        _end_epoch(s, epoch, row, checkpoint_now=epoch + 1 == stop_after_epoch)
        if on_epoch is not None:
            on_epoch(row)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", test=f"{row.get('test_acc') or 0:.3f}")
        if log is not None and s.rank == 0 and (time.time() - last_log >= log_seconds or epoch + 1 == s.total_epochs):
            last_log = time.time()
            test = f", test {100 * row['test_acc']:.1f} %" if row.get("test_acc") is not None else ""
            log(f"{name}: epoch {epoch + 1}/{s.total_epochs}, loss {row['train_loss']:.3f}{test}")
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < s.total_epochs:
            if bar is not None:
                bar.close()
            return {"interrupted_after_epoch": epoch + 1}
    if bar is not None:
        bar.close()
    return _finish(s)


@dataclass
class _Run:
    """Everything one run carries from epoch to epoch."""
    cfg: Config
    run_dir: Path
    rank: int
    world: int
    device: torch.device
    bf16: bool
    bank: Any
    split: Any
    lengths_cpu: torch.Tensor
    labels: torch.Tensor                  # every clip's label, on the device
    model: torch.nn.Module
    net: Any                              # what stage 1 calls: the model, DDP-wrapped and/or compiled
    pipeline: torch.nn.Module
    optimizer: torch.optim.Optimizer
    order_gen: torch.Generator
    key_gen: torch.Generator
    stage1_epochs: int
    total_epochs: int
    stages: list                          # per stage: epochs, warm-up, gamma (Config.stages)
    start_epoch: int = 0
    rows: list = field(default_factory=list)
    stage1_best: dict | None = None       # {"epoch", "supcon_loss", "state"}: where stage 2 starts (stage2_start)
    last_checkpoint: float = 0.0
    started: float = field(default_factory=time.time)
    final: dict | None = None             # the last epoch's test-fold outputs
    eval_cache: dict = field(default_factory=lambda: {"test": None, "val": None})   # the evaluation inputs (_setup)
    memory_format: torch.memory_format = torch.channels_last                   # the model's layout (memory_format_for)

    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"


def _setup(cfg: Config, run_dir: Path, bank, progress: bool) -> _Run:
    """Device, data, model, optimiser and random generators; resume from a checkpoint if there is one."""

    rank, world = distributed()
    device = resolve_device(cfg.run.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True     # fixed input shapes: let cuDNN pick its fastest kernels
    o, r = cfg.optim, cfg.run

    if bank is None:
        if world > 1 and rank != 0:
            torch.distributed.barrier()  # rank 0 decodes the dataset into the cache first
        bank = load_bank(cfg, progress=progress and rank == 0)
        if world > 1 and rank == 0:
            torch.distributed.barrier()
    check_bank(bank, cfg)
    split = bank.split(r.test_fold, r.val_fold)
    lengths_cpu = _lengths_cpu(bank)
    if device.type == "cuda":
        bank = bank.to(device)  # the whole bank on the GPU: no host-device copies in the loop
        bank._soundclr_lengths_cpu = lengths_cpu

    torch.manual_seed(r.seed)  # model initialisation
    layout = memory_format_for(device, r.compile)
    model = build_model(cfg, bank.n_classes).to(device).to(memory_format=layout)
    pipeline = Pipeline(cfg.features, cfg.augment, cfg.data.sample_rate, cfg.data.clip_samples, seed=r.seed).to(device)
    net = model
    if world > 1:
        if device.type == "cuda":
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None,
                                                        find_unused_parameters=r.scheme != "hybrid")
    if r.compile:
        net = torch.compile(net)

    stages = cfg.stages()
    s = _Run(cfg=cfg, run_dir=run_dir, rank=rank, world=world, device=device, bf16=uses_bf16(cfg, device), bank=bank,
             split=split, lengths_cpu=lengths_cpu, labels=bank.labels.to(device), model=model, net=net,
             pipeline=pipeline, optimizer=make_optimizer(cfg, model.parameters(), o.lr),
             order_gen=torch.Generator().manual_seed(r.seed),          # clip order, drawn on the CPU: same on every device and rank
             key_gen=torch.Generator().manual_seed(r.seed + 10007),    # per-clip augmentation keys
             stage1_epochs=stages[0]["epochs"], total_epochs=cfg.total_epochs, stages=stages, memory_format=layout)
    if _cacheable(cfg, split):
        s.eval_cache = {"test": {}, "val": {}}           # computed at the first evaluation, then reused
    if o.batch_size % world:
        raise ValueError(f"setting batch_size={o.batch_size} is not valid with {world} processes: it must be divisible by the number of processes")
    if len(split.train) < o.batch_size:
        raise ValueError(f"setting batch_size={o.batch_size} is not valid: the training folds of {cfg.data.dataset} hold only "
                         f"{len(split.train)} clips (test fold {r.test_fold}); lower batch_size")
    if s.ckpt_path.exists():
        _resume(s)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / "config.json", {"identity": cfg.identity(), "config": cfg.to_dict()})
    return s


def _resume(s: _Run) -> None:
    """Continue from ``checkpoint.pt``; a checkpoint that cannot be read is moved aside (the run restarts)."""
    import warnings
    try:
        ckpt = torch.load(s.ckpt_path, map_location="cpu", weights_only=False)  # generator states must stay on the CPU
        ckpt["epoch"], ckpt["model"]  # noqa: B018 - a checkpoint without them is corrupt too
    except Exception as err:  # a truncated or garbled file: torch's message would not name it
        aside = s.ckpt_path.with_name(f"checkpoint.pt.corrupt-{int(time.time())}")
        os.replace(s.ckpt_path, aside)
        warnings.warn(f"{s.ckpt_path} cannot be read ({type(err).__name__}: {str(err)[:200]}); it was moved to {aside.name} "
                      "and the run restarts from its first epoch (delete that file once you no longer need it)", stacklevel=3)
        return
    if ckpt.get("identity") != s.cfg.identity():
        raise RuntimeError(f"{s.ckpt_path} belongs to a different configuration ({ckpt.get('identity')} != {s.cfg.identity()}): "
                           "delete it or use another results folder")
    s.start_epoch = ckpt["epoch"]
    if s.start_epoch > s.stage1_epochs:
        _enter_stage2(s, restore_best=False)
    s.model.load_state_dict(ckpt["model"])
    s.optimizer.load_state_dict(ckpt["optimizer"])
    s.order_gen.set_state(ckpt["order_gen"])
    s.key_gen.set_state(ckpt["key_gen"])
    s.stage1_best = ckpt.get("stage1_best")
    s.rows = read_metrics(s.run_dir)[:s.start_epoch]
    if len(s.rows) != s.start_epoch:
        raise RuntimeError(f"{s.run_dir / 'metrics.jsonl'} holds {len(s.rows)} epochs but {s.ckpt_path} was saved after epoch "
                           f"{s.start_epoch}: delete the run folder {s.run_dir} to train it again")


def _enter_stage2(s: _Run, restore_best: bool = True) -> None:
    """Stage 2 of the supcon scheme: (the chosen stage-1 weights,) a frozen encoder, a new optimiser
    for the linear classifier."""
    if restore_best and s.stage1_best is not None:
        s.model.load_state_dict(s.stage1_best["state"])
    for p in s.model.parameters():
        p.requires_grad_(False)
    for p in s.model.classifier.parameters():
        p.requires_grad_(True)
    s.optimizer = make_optimizer(s.cfg, s.model.classifier.parameters(), s.cfg.optim.stage2_lr)


def _train_epoch(s: _Run, epoch: int) -> dict:
    """One pass over the training folds; returns the epoch's metrics row (the loss and the
    accuracy summed on the device and read once, here, at the end)."""
    cfg, o = s.cfg, s.cfg.optim
    t0 = time.time()
    stage = 1 if epoch < s.stage1_epochs else 2
    if stage == 2 and epoch == s.stage1_epochs:
        _enter_stage2(s)                                   # stage 2: only the linear classifier learns
    sched = s.stages[stage - 1]
    if stage == 1:
        lr = o.lr * lr_factor(epoch, sched["warmup"], sched["gamma"])
    else:
        lr = o.stage2_lr * lr_factor(epoch - s.stage1_epochs, sched["warmup"], sched["gamma"])  # same warm-up, own decay
    for group in s.optimizer.param_groups:
        group["lr"] = lr
    s.model.train(stage == 1)                             # stage 2: BatchNorm statistics frozen too
    s.pipeline.train()

    # The epoch's plan, on the CPU: clip order, augmentation keys and batch widths. The last
    # partial batch is dropped (a SupCon batch of a few clips has no positives).
    n_train, batch = len(s.split.train), o.batch_size
    steps = n_train // batch
    order = s.split.train[torch.randperm(n_train, generator=s.order_gen)][:steps * batch].view(steps, batch)
    keys = torch.randint(0, KEY_HIGH, (steps, batch), generator=s.key_gen)
    widths = s.lengths_cpu[order].amax(1).clamp(min=1).tolist()
    order_dev, keys_dev = order.to(s.bank.waves.device), keys.to(s.device)
    mine = slice(s.rank * (batch // s.world), (s.rank + 1) * (batch // s.world))

    loss_sum = torch.zeros((), device=s.device)
    correct = torch.zeros((), device=s.device)
    for step in range(steps):
        idx = order_dev[step]
        waves, lengths = s.bank.batch(idx[mine], s.device, width=widths[step])
        labels = s.labels[idx]
        with torch.no_grad():
            x = s.pipeline(waves, lengths, keys=keys_dev[step][mine], validate=False)
        x = x.contiguous(memory_format=s.memory_format)
        with torch.autocast(s.device.type, dtype=torch.bfloat16, enabled=s.bf16):
            if stage == 1:
                out = s.net(x)
            else:
                with torch.no_grad():
                    h = s.model.represent(x)               # frozen encoder: no graph, no backward through it
                out = _Stage2Output(logits=s.model.classifier(h))
        out = _gather_output(out, s.world)
        loss = scheme_loss(cfg, stage, out, labels)
        s.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if stage == 2 and s.world > 1:
            _allreduce_grads(s.model.classifier, s.world)
        s.optimizer.step()
        loss_sum += loss.detach()
        if out.logits is not None:
            correct += (out.logits.detach().argmax(-1) == labels).sum()
    mean_loss, accuracy = torch.stack([loss_sum / steps, correct / (steps * batch)]).tolist()   # the epoch's one read
    trains_classifier = cfg.run.scheme != "supcon" or stage == 2
    return {"epoch": epoch + 1, "stage": stage, "lr": lr, "train_loss": mean_loss,
            "train_acc": accuracy if trains_classifier else None, "seconds": time.time() - t0}


def _end_epoch(s: _Run, epoch: int, row: dict, checkpoint_now: bool = False) -> None:
    """Evaluate, select the stage-1 checkpoint (stage2_start), write the metrics line and,
    when due, a checkpoint."""
    cfg, o, r = s.cfg, s.cfg.optim, s.cfg.run
    t0 = time.time()
    stage, last = row["stage"], epoch + 1 == s.total_epochs
    eval_batch = max(o.batch_size * 2, 64)
    common = dict(batch_size=eval_batch, autocast=s.bf16)
    selects = r.scheme == "supcon" and stage == 1 and o.stage2_start != "final"
    if r.scheme != "supcon" or stage == 2 or last:
        test = evaluate(s.model, s.pipeline, s.bank, s.split.test, s.device, memory_format=s.memory_format, outputs=last, cache=s.eval_cache["test"],
                        supcon=_supcon_options(cfg) if selects and o.stage2_start == "best_test" else None, **common)
        row["test_acc"] = test["accuracy"]
        if last:
            s.final = test
        if "supcon_loss" in test:
            row["select_supcon"] = test["supcon_loss"]
        if s.split.val is not None:
            val = evaluate(s.model, s.pipeline, s.bank, s.split.val, s.device, memory_format=s.memory_format, outputs=False, cache=s.eval_cache["val"],
                           supcon=_supcon_options(cfg) if selects and o.stage2_start == "best_val" else None, **common)
            row["val_acc"] = val["accuracy"]
            if "supcon_loss" in val:
                row["select_supcon"] = val["supcon_loss"]
    elif selects:   # supcon stage 1: the SupCon loss of the selection fold, the released code's criterion
        fold = s.split.test if o.stage2_start == "best_test" else s.split.val
        row["select_supcon"] = evaluate(s.model, s.pipeline, s.bank, fold, s.device, memory_format=s.memory_format, outputs=False,
                                        cache=s.eval_cache["test" if o.stage2_start == "best_test" else "val"],
                                        supcon=_supcon_options(cfg), **common)["supcon_loss"]
    if "select_supcon" in row and (s.stage1_best is None or row["select_supcon"] <= s.stage1_best["supcon_loss"]):
        # ties move to the later epoch, as the released code's early stopping does
        s.stage1_best = {"epoch": row["epoch"], "supcon_loss": row["select_supcon"],
                         "state": {k: v.detach().clone() for k, v in s.model.state_dict().items()}}
    row["seconds"] += time.time() - t0
    s.rows.append(row)
    if s.rank != 0:
        return
    atomic_write_bytes(s.run_dir / "metrics.jsonl", "".join(_jsonl(m) for m in s.rows).encode())
    due = (epoch + 1) % max(1, r.checkpoint_every) == 0 and time.time() - s.last_checkpoint >= r.checkpoint_seconds
    if (due and not last) or checkpoint_now:
        s.last_checkpoint = time.time()
        atomic_torch_save(s.ckpt_path, {"identity": cfg.identity(), "epoch": epoch + 1, "model": s.model.state_dict(),
                                        "optimizer": s.optimizer.state_dict(), "order_gen": s.order_gen.get_state(),
                                        "key_gen": s.key_gen.get_state(), "stage1_best": s.stage1_best})


def _finish(s: _Run) -> dict:
    """The final model's test-fold outputs, the summary (written last: it marks the run finished)."""
    final = s.final
    if final is None:   # resumed after the last epoch's evaluation but before the summary was written
        final = evaluate(s.model, s.pipeline, s.bank, s.split.test, s.device, memory_format=s.memory_format, batch_size=max(s.cfg.optim.batch_size * 2, 64),
                         autocast=s.bf16)
    summary = record.summary(s.cfg, s.rows, final, s.bank, started=s.started, device=s.device,
                             stage2_start_epoch=(s.stage1_best or {}).get("epoch", s.stage1_epochs))
    if s.rank == 0:
        atomic_torch_save(s.run_dir / "model.pt", {"identity": s.cfg.identity(), "n_classes": s.bank.n_classes,
                                                   "class_names": list(s.bank.class_names), "state_dict": s.model.state_dict()})
        atomic_torch_save(s.run_dir / "outputs.pt", {k: final[k] for k in ("probs", "labels", "predictions", "representation",
                                                                           "projection", "indices")})
        atomic_write_json(s.run_dir / "summary.json", summary)   # written last: marks the run finished
        s.ckpt_path.unlink(missing_ok=True)
    return summary
