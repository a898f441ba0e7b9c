"""What one run carries from epoch to epoch (:class:`TrainingState`), how it is set up, and how it is
saved to and resumed from ``checkpoint.pt``: a killed run resumes and ends exactly where an
uninterrupted run would (on the CPU, bit for bit)."""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..audio.pipeline import Pipeline
from ..config import Config
from ..data.bank import WaveBank, load_bank
from ..files import atomic_torch_save, atomic_write_json, is_temporary
from ..model import build_model
from .evaluation import eval_cacheable, lengths_cpu
from .record import read_metrics
from .runtime import distributed, memory_format_for, resolve_device, uses_bf16, wrap_distributed
from .step import make_optimizer


@dataclass
class TrainingState:
    """Everything one run carries from epoch to epoch."""
    cfg: Config
    run_dir: Path
    rank: int
    world: int
    device: torch.device
    bf16: bool
    bank: WaveBank
    split: Any                            # train / val / test indices (WaveBank.split)
    lengths_cpu: torch.Tensor             # (clips,) the clips' lengths, for the batch widths
    labels: torch.Tensor                  # (clips,) every clip's label, on the device
    model: torch.nn.Module
    net: Any                              # what stage 1 calls: the model, DDP-wrapped and/or compiled
    pipeline: Pipeline
    optimizer: torch.optim.Optimizer
    order_gen: torch.Generator            # clip order, drawn on the CPU: the same on every device and rank
    key_gen: torch.Generator              # per-clip augmentation keys
    stage1_epochs: int
    total_epochs: int
    stages: list                          # per stage: epochs, warm-up, gamma (Config.stages)
    start_epoch: int = 0
    rows: list = field(default_factory=list)
    stage1_best: dict | None = None       # {"epoch", "supcon_loss", "state"}: where stage 2 starts (stage2_start)
    last_checkpoint: float = 0.0
    started: float = field(default_factory=time.time)
    final: dict | None = None             # the last epoch's test-fold outputs
    eval_cache: dict = field(default_factory=lambda: {"test": None, "val": None})   # the evaluation inputs
    memory_format: torch.memory_format = torch.channels_last                   # the model's layout

    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    def stage(self, epoch: int) -> int:
        return 1 if epoch < self.stage1_epochs else 2


def check_bank(bank: WaveBank, cfg: Config) -> None:
    """A bank passed in by the caller must be the configuration's dataset at its sample rate."""
    if bank.dataset != cfg.data.dataset or bank.sample_rate != cfg.data.sample_rate:
        raise ValueError(f"the WaveBank given holds {bank.dataset} at {bank.sample_rate} Hz but the configuration asks for "
                         f"{cfg.data.dataset} at {cfg.data.sample_rate} Hz: pass the matching bank or none")


def setup(cfg: Config, run_dir: Path, bank: WaveBank | None, progress: bool) -> TrainingState:
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
    lengths = lengths_cpu(bank)
    if device.type == "cuda":
        bank = bank.to(device)  # the whole bank on the GPU: no host-device copies in the loop
        bank._soundclr_lengths_cpu = lengths

    torch.manual_seed(r.seed)  # model initialisation
    layout = memory_format_for(device, r.compile)
    model = build_model(cfg, bank.n_classes).to(device).to(memory_format=layout)
    pipeline = Pipeline.from_config(cfg, seed=r.seed).to(device)
    net = model
    if world > 1:
        net = wrap_distributed(net, device, r.scheme)
    if r.compile:
        net = torch.compile(net)

    stages = cfg.stages()
    s = TrainingState(cfg=cfg, run_dir=run_dir, rank=rank, world=world, device=device, bf16=uses_bf16(cfg, device),
                      bank=bank, split=split, lengths_cpu=lengths, labels=bank.labels.to(device), model=model, net=net,
                      pipeline=pipeline, optimizer=make_optimizer(cfg, model.parameters(), o.lr),
                      order_gen=torch.Generator().manual_seed(r.seed), key_gen=torch.Generator().manual_seed(r.seed + 10007),
                      stage1_epochs=stages[0]["epochs"], total_epochs=cfg.total_epochs, stages=stages,
                      memory_format=layout)
    if eval_cacheable(cfg, split):
        s.eval_cache = {"test": {}, "val": {}}           # computed at the first evaluation, then reused
    if o.batch_size % world:
        raise ValueError(f"setting batch_size={o.batch_size} is not valid with {world} processes: it must be divisible by the number of processes")
    if len(split.train) < o.batch_size:
        raise ValueError(f"setting batch_size={o.batch_size} is not valid: the training folds of {cfg.data.dataset} hold only "
                         f"{len(split.train)} clips (test fold {r.test_fold}); lower batch_size")
    if rank == 0 and run_dir.is_dir():
        # a worker killed while writing left a temporary beside the file it was replacing (the file itself is
        # whole: the old one or the new one); this process holds the run's lease, so nobody else is writing here
        for leftover in run_dir.iterdir():
            if is_temporary(leftover.name):
                leftover.unlink(missing_ok=True)
    if s.ckpt_path.exists():
        resume(s)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / "config.json", {"identity": cfg.identity(), "config": cfg.to_dict()})
    return s


def save_checkpoint(s: TrainingState, epochs_done: int) -> None:
    """``checkpoint.pt`` after ``epochs_done`` epochs: the weights, the optimiser, both generators and
    the stage-1 weights stage 2 will start from."""
    s.last_checkpoint = time.time()
    atomic_torch_save(s.ckpt_path, {"identity": s.cfg.identity(), "epoch": epochs_done, "model": s.model.state_dict(),
                                    "optimizer": s.optimizer.state_dict(), "order_gen": s.order_gen.get_state(),
                                    "key_gen": s.key_gen.get_state(), "stage1_best": s.stage1_best})


def resume(s: TrainingState) -> None:
    """Continue from ``checkpoint.pt``; a checkpoint that cannot be read is moved aside (the run restarts)."""
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
        enter_stage2(s, restore_best=False)
    s.model.load_state_dict(ckpt["model"])
    s.optimizer.load_state_dict(ckpt["optimizer"])
    s.order_gen.set_state(ckpt["order_gen"])
    s.key_gen.set_state(ckpt["key_gen"])
    s.stage1_best = ckpt.get("stage1_best")
    s.rows = read_metrics(s.run_dir)[:s.start_epoch]
    if len(s.rows) != s.start_epoch:
        raise RuntimeError(f"{s.run_dir / 'metrics.jsonl'} holds {len(s.rows)} epochs but {s.ckpt_path} was saved after epoch "
                           f"{s.start_epoch}: delete the run folder {s.run_dir} to train it again")


def enter_stage2(s: TrainingState, restore_best: bool = True) -> None:
    """Stage 2 of the supcon scheme: (the chosen stage-1 weights,) a frozen encoder, a new optimiser
    for the linear classifier."""
    if restore_best and s.stage1_best is not None:
        s.model.load_state_dict(s.stage1_best["state"])
    for p in s.model.parameters():
        p.requires_grad_(False)
    for p in s.model.classifier.parameters():
        p.requires_grad_(True)
    s.optimizer = make_optimizer(s.cfg, s.model.classifier.parameters(), s.cfg.optim.stage2_lr)
