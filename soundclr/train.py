"""One training run: dataset x scheme x test fold x seed (paper Sec. III-B/C, IV-C).

The three schemes differ in one place, ``scheme_loss`` below:

- ``ce``      cross-entropy on the classifier's logits (Eq. 2);
- ``supcon``  stage 1: SupCon on the projection z (Eq. 3); stage 2: the encoder
              is frozen and a linear classifier is trained on h with
              cross-entropy (h is computed without gradients). Stage 2 starts
              from stage 1's final epoch, or (``stage2_start``) from the stage-1
              epoch whose SupCon loss on the test fold (the released code) or on
              the validation fold was lowest;
- ``hybrid``  alpha * SupCon + (1 - alpha) * cross-entropy (Eq. 4).

Everything else (data, augmentation, optimiser, schedule, evaluation) is the
same for all three. The run reads top to bottom in :func:`train_run`: set up
(:func:`_setup`), then per epoch one pass over the training folds
(:func:`_train_epoch`), one deterministic evaluation of the held-out test fold
(and the validation fold, if one is set) and one line in ``metrics.jsonl``
(:func:`_end_epoch`); then the final outputs and the summary (:func:`_finish`).
A checkpoint at the end of an epoch lets a killed run resume and end exactly
where an uninterrupted run would (on CPU).

Nothing in a training step reads a tensor's value on the host: the epoch's
clip order, augmentation keys and batch widths are drawn on the CPU before the
epoch, the loss and the accuracy are summed on the device, and both are read
once, at the end of the epoch. On a GPU no step waits for the host.

Under ``torchrun`` (WORLD_SIZE > 1) the same code runs DistributedDataParallel:
every rank draws the same global batch and augmentation keys, takes its slice,
and the loss is computed on the outputs gathered from all ranks, so the
gradient equals the single-process one (up to BatchNorm statistics, which are
per rank unless SyncBatchNorm is available on the device).
"""
from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .config import Config
from .store import atomic_torch_save, atomic_write_bytes, atomic_write_json, is_finished, read_json, read_metrics

KEY_HIGH = 2**62


# -- devices and distributed ------------------------------------------------------
def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        from .data import setting_spelling
        raise RuntimeError(f"{setting_spelling('device', name)} is not valid: CUDA is not available on this machine; use "
                           f"{setting_spelling('device', 'cpu')} or {setting_spelling('device', 'auto')}")
    return device


def uses_bf16(cfg: Config, device: torch.device) -> bool:
    """bf16 autocast: ``precision="bf16"``, or ``"auto"`` on CUDA (h, z and the losses stay float32)."""
    return cfg.run.precision == "bf16" or (cfg.run.precision == "auto" and device.type == "cuda")


def distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and os.environ.get("SOUNDCLR_BACKEND") != "gloo" else "gloo"
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def gather(t: torch.Tensor, world: int) -> torch.Tensor:
    """Concatenate a tensor from all ranks, keeping the gradient path to the local part."""
    if world == 1:
        return t
    from torch.distributed.nn.functional import all_gather
    return torch.cat(all_gather(t), dim=0)


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
    from .losses import cross_entropy_loss, hybrid_loss, supcon_loss
    scheme, o = cfg.run.scheme, cfg.optim
    if scheme == "ce" or stage == 2:
        return cross_entropy_loss(out.logits, labels)                       # Eq. 2
    if scheme == "supcon":
        return supcon_loss(out.projection, labels, o.temperature,           # Eq. 3 (stage 1)
                           form=o.supcon_form, no_positive=o.no_positive)
    return hybrid_loss(out.projection, out.logits, labels, o.alpha, o.temperature,  # Eq. 4
                       form=o.supcon_form, no_positive=o.no_positive)


# -- batches ----------------------------------------------------------------------------
def _lengths_cpu(bank) -> torch.Tensor:
    """The clips' lengths on the CPU (read once per bank), for the batch widths."""
    cached = getattr(bank, "_soundclr_lengths_cpu", None)
    if cached is None:
        cached = bank.lengths.cpu()
        bank._soundclr_lengths_cpu = cached
    return cached


# -- evaluation -------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model, pipeline, bank, indices: torch.Tensor, device, *, batch_size: int = 256,
             memory_format: torch.memory_format = torch.channels_last,
             noise_std: float = 0.0, noise_seed: int = 0, autocast: bool = False, outputs: bool = True,
             supcon: dict | None = None, cache: dict | None = None) -> dict:
    """Deterministic evaluation: eval pipeline (no augmentation, centred pad/crop).

    Returns ``accuracy`` and, with ``outputs``, softmax ``probs (clips, classes)``,
    ``representation (clips, D)``, ``projection (clips, P)``, ``labels``, ``predictions`` and
    ``indices`` on the CPU. With ``noise_std`` > 0, white Gaussian noise of that standard
    deviation is added to each clip after trim and pad/crop (paper Sec. IV-E), drawn from a
    generator seeded with ``noise_seed``. ``supcon`` (``temperature``, ``form``,
    ``no_positive``) adds ``supcon_loss``: the SupCon loss of the clips' projections, the mean
    over batches of ``batch_size`` clips in a fixed shuffled order (the released code's
    criterion for the stage-1 checkpoint). Values are read on the host once, at the end.
    ``cache`` (a dict the caller keeps, one per set of indices): the model inputs of a clean
    evaluation never change, so they are computed once and reused (a training run evaluates
    its test fold after every epoch).
    """
    from .losses import supcon_loss

    was_training = model.training, pipeline.training
    model.eval(), pipeline.eval()
    idx_cpu = torch.as_tensor(indices, dtype=torch.long).cpu()
    idx_dev = idx_cpu.to(bank.waves.device)
    chunks = idx_cpu.split(batch_size)
    widths = torch.stack([_lengths_cpu(bank)[c].amax() for c in chunks]).tolist() if len(idx_cpu) else []
    gen = torch.Generator().manual_seed(noise_seed)
    logits, reps, projs = [], [], []
    reuse = cache is not None and noise_std == 0
    for b, start in enumerate(range(0, len(idx_cpu), batch_size)):
        x = cache.get(b) if reuse else None
        if x is None:
            waves, lengths = bank.batch(idx_dev[start:start + batch_size], device, width=max(widths[b], 1))
            x = pipeline(waves, lengths, noise_std=noise_std, noise_generator=gen, validate=False)
            x = x.contiguous(memory_format=memory_format)    # the model's layout (see _setup)
            if reuse:
                cache[b] = x
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            out = model(x)
        logits.append(out.logits.float())
        reps.append(out.representation)
        projs.append(out.projection)
    model.train(was_training[0]), pipeline.train(was_training[1])
    probs = torch.cat(logits).softmax(-1)
    labels = bank.labels[idx_dev].to(device)
    pred = probs.argmax(-1)
    scalars = [(pred == labels).sum().float() / max(len(idx_cpu), 1)]
    if supcon is not None:
        z = torch.cat(projs)
        order = torch.randperm(len(idx_cpu), generator=torch.Generator().manual_seed(0)).to(z.device)
        scalars.append(torch.stack([supcon_loss(z[o], labels[o], **supcon) for o in order.split(batch_size)]).mean())
    values = torch.stack(scalars).tolist()                      # the one host read
    res: dict[str, Any] = {"accuracy": values[0]}
    if supcon is not None:
        res["supcon_loss"] = values[1]
    if outputs:
        res.update(probs=probs.cpu(), labels=labels.cpu(), predictions=pred.cpu(), representation=torch.cat(reps).cpu(),
                   projection=torch.cat(projs).cpu(), indices=idx_cpu)
    return res


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, n_classes: int) -> list[list[int]]:
    flat = labels * n_classes + predictions
    return torch.bincount(flat, minlength=n_classes * n_classes).view(n_classes, n_classes).tolist()


# -- before the work: what would stop a run late is reported first ---------------------------------
class ResultsFolderError(RuntimeError):
    """The results folder cannot be written."""


def preflight(configs: Config | list[Config], *, results: Path | str | None = None, data: bool = True) -> None:
    """Check, before any decoding or training, what would otherwise stop a grid after the work has
    started, and raise the first problem found:

    - every setting (ConfigError), and the device (CUDA asked for but not available);
    - that ``results`` (a results or run folder) can be created and written (ResultsFolderError);
    - with ``data``, the dataset: its folder and metadata file, that ESC-10 rows are marked, and that
      the test (and validation) folds leave at least ``batch_size`` training clips (DatasetError,
      ConfigError); the synthetic dataset is generated on first use and not checked here;
    - the model's weights: a weights file that does not exist, ImageNet weights for the tiny
      backbone, or ImageNet weights that are not in the torch hub cache and cannot be downloaded
      into it now (WeightsError).

    Each check is cheap (the metadata file is read, no audio is decoded, no model is built); the
    same dataset or weights are checked once per process. Messages name the settings the way the
    user gives them (``--weights none`` at the command line, ``weights="none"`` in Python).
    """
    configs = [configs] if isinstance(configs, Config) else list(configs)
    for cfg in configs:
        cfg.resolved().validate()
        resolve_device(cfg.run.device)
    if results is not None:
        _check_writable(Path(results))
    for cfg in configs:
        if data:
            _check_dataset(cfg.resolved())
        _check_weights(cfg)


def _check_writable(folder: Path) -> None:
    from .data import INTERFACE_ENV
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".soundclr-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        how = "with --results FOLDER" if os.environ.get(INTERFACE_ENV) == "cli" else "(results=...)"
        raise ResultsFolderError(f"cannot write results into {folder} ({err.strerror or err}): make that folder writable, "
                                 f"or choose another results folder {how}") from None


_CHECKED: dict = {}


def _check_dataset(cfg: Config) -> None:
    from .config import ConfigError
    from .data import LAYOUTS, DatasetError, _missing_folder, _read_metadata, dataset_folder
    d, r = cfg.data, cfg.run
    if d.dataset == "synthetic":
        return                                    # generated on first use (soundclr.synthetic)
    folder = dataset_folder(cfg)
    key = ("data", d.dataset, str(folder.resolve()))
    meta = _CHECKED.get(key)
    if meta is None:
        if not folder.is_dir():
            raise _missing_folder(d.dataset, folder)
        meta = _read_metadata(d.dataset, folder)
        if d.dataset == "esc10" and (meta.esc10 is None or not meta.esc10.any()):
            raise DatasetError(f"metadata file {folder / LAYOUTS[d.dataset].metadata} marks no clip as ESC-10 (column "
                               "'esc10'): restore the official ESC-50 metadata file.")
        _CHECKED[key] = meta
    import numpy as np
    rows = meta.esc10 if d.dataset == "esc10" else np.ones(len(meta.files), bool)
    folds = sorted(set(meta.folds[rows].tolist()))
    for name, fold in (("test_fold", r.test_fold), ("val_fold", r.val_fold)):
        if fold is not None and fold not in folds:
            raise DatasetError(f"{name}={fold} is not a fold of {d.dataset}: the valid folds are {folds}")
    train = int((rows & (meta.folds != r.test_fold) & (meta.folds != (r.val_fold or 0))).sum())
    if train < cfg.optim.batch_size:
        from .data import setting_spelling
        raise ConfigError(f"setting batch_size={cfg.optim.batch_size} is not valid: the training folds of {d.dataset} hold "
                          f"only {train} clips (test fold {r.test_fold}); lower it ({setting_spelling('batch_size', train)} "
                          f"at most)")


def _check_weights(cfg: Config) -> None:
    from .data import setting_spelling
    from .model import WeightsError, _download, _imagenet_weights, imagenet_cache_path
    backbone, weights = cfg.model.backbone, str(cfg.model.weights)
    instead = f"{setting_spelling('weights', 'none')} (or {setting_spelling('weights', 'PATH')} to a state dict)"
    if weights == "imagenet":
        if backbone == "tiny":
            raise WeightsError(f"there are no ImageNet weights for the 'tiny' backbone: set {instead}, or choose the "
                               f"backbone resnet18/resnet34/resnet50 ({setting_spelling('backbone', 'resnet50')}).")
        path = imagenet_cache_path(backbone)
        if ("weights", str(path)) in _CHECKED or path.exists():
            _CHECKED[("weights", str(path))] = True
            return
        url = _imagenet_weights(backbone).url
        try:
            _download(url, path, 10.0)
        except WeightsError:
            raise
        except Exception as err:                  # offline: URLError, OSError, TimeoutError
            raise WeightsError(
                f"ImageNet weights for {backbone} are not in the torch hub cache and could not be downloaded "
                f"({err}). Download {url} on a machine with internet and put the file {path.name} in {path.parent} "
                f"(that is torch.hub.get_dir()/checkpoints; set TORCH_HOME to move it), or set {instead}."
            ) from None
        _CHECKED[("weights", str(path))] = True
    elif weights != "none":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"{setting_spelling('weights', weights)}: no such file {path.resolve()}. Expected "
                               f"'imagenet', 'none' or the path of a state dict saved with torch.save.")


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


def memory_format_for(device: torch.device, compiled: bool) -> torch.memory_format:
    """The model's layout. Channels-last (NHWC) convolutions are faster with cuDNN, and with oneDNN on a CPU
    too (a third off a tiny-backbone step on one core). Not for a compiled model on a CPU: torch 2.11's
    inductor generates a CPU backward for channels-last BatchNorm that fails (UnboundLocalError in the
    generated code; tests/test_host_reads.py trains one compiled run), and it picks its own layout."""
    return torch.contiguous_format if compiled and device.type == "cpu" else torch.channels_last


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
    from .augment import Pipeline
    from .data import load_bank
    from .model import build_model

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


EVAL_CACHE_BYTES = 1 << 30   # keep the evaluation inputs of a run when they take at most this much memory


def _cacheable(cfg: Config, split) -> bool:
    c = cfg.resolved()
    frames = 1 + c.data.clip_samples // c.features.hop_length
    clips = len(split.test) + (len(split.val) if split.val is not None else 0)
    return clips * c.features.channels * c.features.n_mels * frames * 4 <= EVAL_CACHE_BYTES


def _supcon_options(cfg: Config) -> dict:
    o = cfg.optim
    return {"temperature": o.temperature, "form": o.supcon_form, "no_positive": o.no_positive}


def _finish(s: _Run) -> dict:
    """The final model's test-fold outputs, the summary (written last: it marks the run finished)."""
    final = s.final
    if final is None:   # resumed after the last epoch's evaluation but before the summary was written
        final = evaluate(s.model, s.pipeline, s.bank, s.split.test, s.device, memory_format=s.memory_format, batch_size=max(s.cfg.optim.batch_size * 2, 64),
                         autocast=s.bf16)
    summary = _summary(s.cfg, s.rows, final, s.bank, s)
    if s.rank == 0:
        atomic_torch_save(s.run_dir / "model.pt", {"identity": s.cfg.identity(), "n_classes": s.bank.n_classes,
                                                   "class_names": list(s.bank.class_names), "state_dict": s.model.state_dict()})
        atomic_torch_save(s.run_dir / "outputs.pt", {k: final[k] for k in ("probs", "labels", "predictions", "representation",
                                                                           "projection", "indices")})
        atomic_write_json(s.run_dir / "summary.json", summary)   # written last: marks the run finished
        s.ckpt_path.unlink(missing_ok=True)
    return summary


class _Stage2Output:
    def __init__(self, logits):
        self.logits, self.projection, self.representation = logits, None, None


def _gather_output(out, world: int):
    if world == 1:
        return out
    o = _Stage2Output(gather(out.logits, world))
    if out.projection is not None:
        o.projection = gather(out.projection, world)
    return o


def _allreduce_grads(module, world: int) -> None:
    import torch.distributed as dist
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


def _jsonl(row: dict) -> str:
    import json
    return json.dumps(row) + "\n"


def provenance(device: torch.device | str | None = None) -> dict:
    """What produced a result: library versions, the device, the git commit of the code (when it
    runs from a repository) and the host."""
    import subprocess

    import torchaudio
    import torchvision

    from . import __version__
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine() or "cpu"
    commit = None
    root = Path(__file__).resolve().parent.parent
    if (root / ".git").exists():
        try:
            r = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
            if r.returncode == 0:
                commit = r.stdout.strip()
                dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "soundclr"],
                                       capture_output=True, text=True, timeout=10).stdout.strip()
                commit += "+modified" if dirty else ""
        except (OSError, subprocess.SubprocessError):
            commit = None
    return {"soundclr": __version__, "torch": torch.__version__, "torchaudio": torchaudio.__version__,
            "torchvision": torchvision.__version__, "python": platform.python_version(),
            "device": f"{device.type if device is not None else 'cpu'}: {name}", "git_commit": commit,
            "host": platform.node()}


def _summary(cfg: Config, rows: list[dict], final: dict, bank, s: _Run | None = None) -> dict:
    evaluated = [m for m in rows if m.get("test_acc") is not None]
    best = max(evaluated, key=lambda m: (m["test_acc"], -m["epoch"]))
    two_stage = cfg.run.scheme == "supcon"
    start = cfg.optim.stage2_start if two_stage else None
    final_protocol = "the final epoch's accuracy on the test fold (our headline)"
    if start == "best_test":
        final_protocol += ("; stage 2 started from the stage-1 epoch with the lowest SupCon loss on the test fold "
                           "(the released code's rule: the test fold chose that checkpoint)")
    elif start == "best_val":
        final_protocol += "; stage 2 started from the stage-1 epoch with the lowest SupCon loss on the validation fold"
    out = {
        "dataset": cfg.data.dataset, "scheme": cfg.run.scheme, "test_fold": cfg.run.test_fold,
        "val_fold": cfg.run.val_fold, "seed": cfg.run.seed, "identity": cfg.identity(),
        "epochs": len(rows),
        "final": {"test_acc": final["accuracy"], "epoch": rows[-1]["epoch"], "protocol": final_protocol},
        "best_on_test": {"test_acc": best["test_acc"], "epoch": best["epoch"],
                         "protocol": "the paper's: the best epoch selected on the test fold itself (optimistic)"},
        "best_on_validation": None,
        "stage2_start": None if not two_stage else {
            "rule": start, "epoch": (s.stage1_best or {}).get("epoch", s.stage1_epochs) if s else None},
        "n_test": len(final["labels"]),
        "class_names": list(bank.class_names),
        "confusion": confusion_matrix(final["labels"], final["predictions"], bank.n_classes),
        "seconds": sum(m["seconds"] for m in rows),
        "wall_seconds": (time.time() - s.started) if s else None,
        "provenance": provenance(s.device if s else None),
    }
    with_val = [m for m in evaluated if m.get("val_acc") is not None]
    if with_val:
        sel = max(with_val, key=lambda m: (m["val_acc"], -m["epoch"]))
        out["best_on_validation"] = {"test_acc": sel["test_acc"], "val_acc": sel["val_acc"], "epoch": sel["epoch"],
                                     "protocol": "epoch selected on the validation fold, reported on the test fold"}
    if not math.isfinite(rows[-1]["train_loss"]):
        out["warning"] = "the training loss is not finite: lower the learning rate"
    return out
