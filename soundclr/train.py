"""One training run: dataset x scheme x test fold x seed (paper Sec. III-B/C, IV-C).

The three schemes differ in one place, ``scheme_loss`` below:

- ``ce``      cross-entropy on the classifier's logits (Eq. 2);
- ``supcon``  stage 1: SupCon on the projection z (Eq. 3); stage 2: the encoder
              is frozen and a linear classifier is trained on h with
              cross-entropy (h is computed without gradients);
- ``hybrid``  alpha * SupCon + (1 - alpha) * cross-entropy (Eq. 4).

Everything else (data, augmentation, optimiser, schedule, evaluation) is the
same for all three. Each epoch ends with a deterministic evaluation of the
held-out test fold (and the validation fold, if one is set) and one line in
``metrics.jsonl``; a checkpoint after each epoch lets a killed run resume
and end exactly where an uninterrupted run would (on CPU).

Under ``torchrun`` (WORLD_SIZE > 1) the same code runs DistributedDataParallel:
every rank draws the same global batch and augmentation keys, takes its slice,
and the loss is computed on the outputs gathered from all ranks, so the
gradient equals the single-process one (up to BatchNorm statistics, which are
per rank unless SyncBatchNorm is available on the device).
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Callable

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
        raise RuntimeError(f"setting device={name!r} is not valid: CUDA is not available on this machine; use device='cpu' or 'auto'")
    return device


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
    if cfg.optim.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.optim.weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=cfg.optim.weight_decay)


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


# -- evaluation -------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model, pipeline, bank, indices: torch.Tensor, device, *, batch_size: int = 256,
             noise_std: float = 0.0, noise_seed: int = 0, autocast: bool = False) -> dict:
    """Deterministic evaluation: eval pipeline (no augmentation, centred pad/crop).

    Returns accuracy, softmax ``probs (clips, classes)``, ``representation (clips, D)``,
    ``projection (clips, P)``, ``labels`` and ``predictions``. With ``noise_std`` > 0,
    white Gaussian noise of that standard deviation is added to the test waves
    (paper Sec. IV-E), drawn from a generator seeded with ``noise_seed``.
    """
    from .data import to_float

    was_training = model.training, pipeline.training
    model.eval(), pipeline.eval()
    gen = torch.Generator().manual_seed(noise_seed)
    probs, reps, projs = [], [], []
    for start in range(0, len(indices), batch_size):
        idx = indices[start:start + batch_size]
        waves, lengths = bank.batch(idx, device)
        if noise_std > 0:
            w = to_float(waves)
            noise = torch.randn(w.shape, generator=gen).to(device) * noise_std
            mask = torch.arange(w.shape[1], device=device)[None, :] < lengths[:, None]
            waves = (w + noise * mask).clamp(-1.0, 1.0)
        x = pipeline(waves, lengths)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            out = model(x)
        probs.append(out.logits.float().softmax(-1).cpu())
        reps.append(out.representation.float().cpu())
        projs.append(out.projection.float().cpu())
    model.train(was_training[0]), pipeline.train(was_training[1])
    probs_t = torch.cat(probs)
    labels = bank.labels[indices].cpu()
    pred = probs_t.argmax(-1)
    return {"accuracy": (pred == labels).float().mean().item(), "probs": probs_t, "labels": labels,
            "predictions": pred, "representation": torch.cat(reps), "projection": torch.cat(projs),
            "indices": indices.cpu()}


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, n_classes: int) -> list[list[int]]:
    flat = labels * n_classes + predictions
    return torch.bincount(flat, minlength=n_classes * n_classes).view(n_classes, n_classes).tolist()


# -- the run ----------------------------------------------------------------------------
def train_run(cfg: Config, run_dir: Path | str, *, bank=None, progress: bool = True,
              stop_after_epoch: int | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Train one run into ``run_dir`` and return its summary.

    A finished run (``summary.json`` present) is not retrained: its summary is
    returned. A run with a checkpoint resumes from it. ``stop_after_epoch``
    simulates a kill after that many epochs (for tests of resumption).
    """
    from .augment import Pipeline
    from .data import load_bank
    from .model import build_model

    cfg = cfg.resolved()
    cfg.validate()
    run_dir = Path(run_dir)
    if is_finished(run_dir):
        summary = read_json(run_dir / "summary.json")
        if summary.get("identity") != cfg.identity():
            raise RuntimeError(f"{run_dir} holds a finished run of a different configuration ({summary.get('identity')} != "
                               f"{cfg.identity()}): use another results folder or delete it")
        return summary
    rank, world = distributed()
    device = resolve_device(cfg.run.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    use_bf16 = cfg.run.precision == "bf16" or (cfg.run.precision == "auto" and device.type == "cuda")
    o, r = cfg.optim, cfg.run

    if bank is None:
        if world > 1 and rank != 0:
            torch.distributed.barrier()  # rank 0 decodes the dataset into the cache first
        bank = load_bank(cfg, progress=progress and rank == 0)
        if world > 1 and rank == 0:
            torch.distributed.barrier()
    check_bank(bank, cfg)
    split = bank.split(r.test_fold, r.val_fold)
    if device.type == "cuda":
        bank = bank.to(device)  # the whole bank on the GPU: no host-device copies in the loop

    torch.manual_seed(r.seed)  # model initialisation
    model = build_model(cfg, bank.n_classes).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    pipeline = Pipeline(cfg.features, cfg.augment, cfg.data.sample_rate, cfg.data.clip_samples, seed=r.seed).to(device)
    net = model
    if world > 1:
        if device.type == "cuda":
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None,
                                                        find_unused_parameters=r.scheme != "hybrid")

    stage1_epochs = o.epochs
    stage2_epochs = o.stage2_epochs if r.scheme == "supcon" else 0
    total_epochs = stage1_epochs + stage2_epochs
    order_gen = torch.Generator().manual_seed(r.seed)        # clip order, drawn on the CPU: same on every device and rank
    key_gen = torch.Generator().manual_seed(r.seed + 10007)  # per-clip augmentation keys
    optimizer = make_optimizer(cfg, model.parameters(), o.lr)
    start_epoch, metrics_rows = 0, []

    ckpt_path = run_dir / "checkpoint.pt"
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)  # generator states must stay on the CPU
        if ckpt["identity"] != cfg.identity():
            raise RuntimeError(f"{ckpt_path} belongs to a different configuration ({ckpt['identity']} != {cfg.identity()}): "
                               "delete it or use another results folder")
        start_epoch = ckpt["epoch"]
        if start_epoch > stage1_epochs:
            _freeze_encoder(model)
            optimizer = make_optimizer(cfg, model.classifier.parameters(), o.stage2_lr)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        order_gen.set_state(ckpt["order_gen"])
        key_gen.set_state(ckpt["key_gen"])
        metrics_rows = read_metrics(run_dir)[:start_epoch]
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / "config.json", {"identity": cfg.identity(), "config": cfg.to_dict()})

    n_train = len(split.train)
    per_rank = o.batch_size // world
    if o.batch_size % world:
        raise ValueError(f"setting batch_size={o.batch_size} is not valid with {world} processes: it must be divisible by the number of processes")
    steps = max(1, n_train // o.batch_size)  # drop the last partial batch: a SupCon batch of a few clips has no positives
    bar = None
    last_checkpoint = 0.0
    if progress and rank == 0:
        from tqdm.auto import tqdm
        bar = tqdm(total=total_epochs, initial=start_epoch, desc=f"{cfg.data.dataset} {r.scheme} fold {r.test_fold} seed {r.seed}", unit="epoch")

    for epoch in range(start_epoch, total_epochs):
        t0 = time.time()
        stage = 1 if epoch < stage1_epochs else 2
        if stage == 2 and epoch == stage1_epochs:
            _freeze_encoder(model)                      # stage 2: only the linear classifier learns
            optimizer = make_optimizer(cfg, model.classifier.parameters(), o.stage2_lr)
        if stage == 1:
            lr = o.lr * lr_factor(epoch, o.warmup_epochs, o.gamma)
        else:
            lr = o.stage2_lr * lr_factor(epoch - stage1_epochs, o.warmup_epochs, o.stage2_gamma)  # same warm-up, own decay
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train(stage == 1)                         # stage 2: BatchNorm statistics frozen too
        pipeline.train()
        order = split.train[torch.randperm(n_train, generator=order_gen)]
        loss_sum, correct, seen = 0.0, 0, 0
        for step in range(steps):
            idx = order[step * o.batch_size:(step + 1) * o.batch_size]
            keys = torch.randint(0, KEY_HIGH, (len(idx),), generator=key_gen)
            mine = slice(rank * per_rank, (rank + 1) * per_rank)
            waves, lengths = bank.batch(idx[mine], device)
            labels = bank.labels[idx].to(device)
            with torch.no_grad():
                x = pipeline(waves, lengths, keys=keys[mine].to(device))
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                if stage == 1:
                    out = net(x)
                else:
                    with torch.no_grad():
                        h = model.represent(x)          # frozen encoder: no graph, no backward through it
                    out = _Stage2Output(logits=model.classifier(h))
            out = _gather_output(out, world)
            loss = scheme_loss(cfg, stage, out, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if stage == 2 and world > 1:
                _allreduce_grads(model.classifier, world)
            optimizer.step()
            loss_sum += loss.item() * len(idx)
            seen += len(idx)
            if out.logits is not None:
                correct += (out.logits.argmax(-1) == labels).sum().item()

        row = {"epoch": epoch + 1, "stage": stage, "lr": lr, "train_loss": loss_sum / max(seen, 1),
               "train_acc": correct / seen if (r.scheme != "supcon" or stage == 2) else None}
        evaluates = r.scheme != "supcon" or stage == 2 or epoch == total_epochs - 1
        if evaluates:
            test = evaluate(model, pipeline, bank, split.test, device, batch_size=o.batch_size * 2, autocast=use_bf16)
            row["test_acc"] = test["accuracy"]
            if split.val is not None:
                row["val_acc"] = evaluate(model, pipeline, bank, split.val, device, batch_size=o.batch_size * 2, autocast=use_bf16)["accuracy"]
        row["seconds"] = time.time() - t0
        metrics_rows.append(row)
        if rank == 0:
            atomic_write_bytes(run_dir / "metrics.jsonl", "".join(_jsonl(m) for m in metrics_rows).encode())
            due = (epoch + 1) % max(1, r.checkpoint_every) == 0 and time.time() - last_checkpoint >= r.checkpoint_seconds
            if due or epoch + 1 == stop_after_epoch:
                last_checkpoint = time.time()
                atomic_torch_save(ckpt_path, {"identity": cfg.identity(), "epoch": epoch + 1, "model": model.state_dict(),
                                              "optimizer": optimizer.state_dict(), "order_gen": order_gen.get_state(),
                                              "key_gen": key_gen.get_state()})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", test=f"{row.get('test_acc') or 0:.3f}")
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < total_epochs:
            if bar is not None:
                bar.close()
            return {"interrupted_after_epoch": epoch + 1}
    if bar is not None:
        bar.close()

    final = evaluate(model, pipeline, bank, split.test, device, batch_size=o.batch_size * 2, autocast=use_bf16)
    summary = _summary(cfg, metrics_rows, final, bank)
    if rank == 0:
        atomic_torch_save(run_dir / "model.pt", {"identity": cfg.identity(), "n_classes": bank.n_classes,
                                                "class_names": list(bank.class_names), "state_dict": model.state_dict()})
        atomic_torch_save(run_dir / "outputs.pt", {k: final[k] for k in ("probs", "labels", "predictions", "representation", "projection", "indices")})
        atomic_write_json(run_dir / "summary.json", summary)   # written last: marks the run finished
        ckpt_path.unlink(missing_ok=True)
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


def _freeze_encoder(model) -> None:
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.classifier.parameters():
        p.requires_grad_(True)


def _jsonl(row: dict) -> str:
    import json
    return json.dumps(row) + "\n"


def _summary(cfg: Config, rows: list[dict], final: dict, bank) -> dict:
    evaluated = [m for m in rows if m.get("test_acc") is not None]
    best = max(evaluated, key=lambda m: (m["test_acc"], -m["epoch"]))
    out = {
        "dataset": cfg.data.dataset, "scheme": cfg.run.scheme, "test_fold": cfg.run.test_fold,
        "val_fold": cfg.run.val_fold, "seed": cfg.run.seed, "identity": cfg.identity(),
        "epochs": len(rows),
        "final": {"test_acc": final["accuracy"], "epoch": rows[-1]["epoch"],
                  "protocol": "the final epoch's accuracy on the test fold (our headline)"},
        "best_on_test": {"test_acc": best["test_acc"], "epoch": best["epoch"],
                         "protocol": "the paper's: the best epoch selected on the test fold itself (optimistic)"},
        "best_on_validation": None,
        "n_test": len(final["labels"]),
        "class_names": list(bank.class_names),
        "confusion": confusion_matrix(final["labels"], final["predictions"], bank.n_classes),
        "seconds": sum(m["seconds"] for m in rows),
    }
    with_val = [m for m in evaluated if m.get("val_acc") is not None]
    if with_val:
        sel = max(with_val, key=lambda m: (m["val_acc"], -m["epoch"]))
        out["best_on_validation"] = {"test_acc": sel["test_acc"], "val_acc": sel["val_acc"], "epoch": sel["epoch"],
                                     "protocol": "epoch selected on the validation fold, reported on the test fold"}
    if not math.isfinite(rows[-1]["train_loss"]):
        out["warning"] = "the training loss is not finite: lower the learning rate"
    return out
