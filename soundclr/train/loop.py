"""One training run: dataset x scheme x test fold x seed (paper Sec. III-B/C, IV-C).

:func:`train_run` reads top to bottom: set up (or resume), then per epoch one pass over the
training folds (:func:`train_epoch`, one :func:`~soundclr.train.step.train_step` per batch), one
deterministic evaluation of the test fold and the validation fold if one is set
(:func:`evaluate_epoch`), and one line in ``metrics.jsonl`` with a checkpoint when one is due
(:func:`record_epoch`); then the final outputs and the summary (:func:`finish`).

Everything but the loss (:func:`~soundclr.train.step.scheme_loss`) is the same for the three
schemes. Nothing in a training step reads a tensor's value on the host: the epoch's clip order,
augmentation keys and batch widths are drawn on the CPU before the epoch, the loss and the
accuracy are summed on the device, and both are read once, at the end of the epoch.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from .. import schemes
from ..config import Config
from ..files import atomic_torch_save, atomic_write_bytes, atomic_write_json, read_json
from . import record
from .checks import preflight
from .evaluation import eval_batch_size, evaluate, supcon_options
from .state import TrainingState, enter_stage2, save_checkpoint, setup
from .step import lr_factor, train_step

KEY_HIGH = 2**62       # augmentation keys are drawn in [0, 2^62)


def train_run(cfg: Config, run_dir: Path | str, *, bank=None, progress: bool = True,
              log: Callable[[str], None] | None = None, on_epoch: Callable[[dict], None] | None = None,
              log_seconds: float = 30.0) -> dict:
    """Train one run into ``run_dir`` and return its summary.

    A finished run (``summary.json`` present) is not retrained: its summary is returned. A run
    with a checkpoint resumes from it. ``progress`` shows a progress bar; ``log`` receives a line
    at most every ``log_seconds`` (and at the end); ``on_epoch`` is called with each epoch's
    metrics row, after its checkpoint (a worker's heartbeat). Before any work, :func:`preflight`
    checks the settings, the run folder, the dataset (when no ``bank`` is given) and the weights.
    """
    cfg = cfg.resolved()
    cfg.validate()
    run_dir = Path(run_dir)
    if record.is_finished(run_dir):
        return finished_summary(cfg, run_dir)
    preflight(cfg, results=run_dir.parent, data=bank is None)
    s = setup(cfg, run_dir, bank, progress)
    report = _Progress(s, progress, log, log_seconds)
    for epoch in range(s.start_epoch, s.total_epochs):
        row = train_epoch(s, epoch)
        evaluate_epoch(s, row)
        record_epoch(s, row)
        if on_epoch is not None:
            on_epoch(row)
        report.epoch(row)
    report.close()
    return finish(s)


def train_epoch(s: TrainingState, epoch: int) -> dict:
    """One pass over the training folds; returns the epoch's metrics row (the loss and the accuracy
    summed on the device and read once, here, at the end)."""
    cfg, o = s.cfg, s.cfg.optim
    t0 = time.time()
    stage = s.stage(epoch)
    if stage == 2 and epoch == s.stage1_epochs:
        enter_stage2(s)                                    # stage 2: only the linear classifier learns
    sched = s.stages[stage - 1]
    if stage == 1:
        lr = o.lr * lr_factor(epoch, sched["warmup"], sched["gamma"])
    else:
        lr = o.stage2_lr * lr_factor(epoch - s.stage1_epochs, sched["warmup"], sched["gamma"])  # same warm-up, own decay
    for group in s.optimizer.param_groups:
        group["lr"] = lr
    s.model.train(stage == 1)                              # stage 2: BatchNorm statistics frozen too
    s.pipeline.train()

    # The epoch's plan, on the CPU: clip order, augmentation keys and batch widths. The last
    # partial batch is dropped (a SupCon batch of a few clips has no positives).
    n_train, batch = len(s.split.train), o.batch_size
    steps = n_train // batch
    order = s.split.train[torch.randperm(n_train, generator=s.order_gen)][:steps * batch].view(steps, batch)
    keys = torch.randint(0, KEY_HIGH, (steps, batch), generator=s.key_gen)
    widths = s.lengths_cpu[order].amax(1).clamp(min=1).tolist()
    order_dev, keys_dev = order.to(s.bank.waves.device), keys.to(s.device)
    mine = slice(s.rank * (batch // s.world), (s.rank + 1) * (batch // s.world))   # this rank's slice of a batch

    loss_sum = torch.zeros((), device=s.device)
    correct = torch.zeros((), device=s.device)
    for step in range(steps):
        idx = order_dev[step]
        waves, lengths = s.bank.batch(idx[mine], s.device, width=widths[step])
        labels = s.labels[idx]
        loss, logits = train_step(cfg, s.net, s.pipeline, s.optimizer, waves, lengths, labels, keys_dev[step][mine],
                                  stage=stage, model=s.model, world=s.world, bf16=s.bf16, memory_format=s.memory_format)
        loss_sum += loss
        if logits is not None:
            correct += (logits.argmax(-1) == labels).sum()
    mean_loss, accuracy = torch.stack([loss_sum / steps, correct / (steps * batch)]).tolist()   # the epoch's one read
    trains_classifier = not schemes.get(cfg.run.scheme).two_stage or stage == 2
    return {"epoch": epoch + 1, "stage": stage, "lr": lr, "train_loss": mean_loss,
            "train_acc": accuracy if trains_classifier else None, "seconds": time.time() - t0}


def evaluate_epoch(s: TrainingState, row: dict) -> None:
    """Score the held-out folds into ``row``, and keep the stage-1 weights stage 2 will start from
    (``stage2_start``: the epoch with the lowest SupCon loss on the test or validation fold)."""
    o, r = s.cfg.optim, s.cfg.run
    t0 = time.time()
    stage, last = row["stage"], row["epoch"] == s.total_epochs
    common = dict(batch_size=eval_batch_size(s.cfg), autocast=s.bf16, memory_format=s.memory_format)
    two_stage = schemes.get(r.scheme).two_stage
    selects = two_stage and stage == 1 and o.stage2_start != "final"
    if not two_stage or stage == 2 or last:
        test = evaluate(s.model, s.pipeline, s.bank, s.split.test, s.device, outputs=last, cache=s.eval_cache["test"],
                        supcon=supcon_options(s.cfg) if selects and o.stage2_start == "best_test" else None, **common)
        row["test_acc"] = test["accuracy"]
        if last:
            s.final = test
        if "supcon_loss" in test:
            row["select_supcon"] = test["supcon_loss"]
        if s.split.val is not None:
            val = evaluate(s.model, s.pipeline, s.bank, s.split.val, s.device, outputs=False, cache=s.eval_cache["val"],
                           supcon=supcon_options(s.cfg) if selects and o.stage2_start == "best_val" else None, **common)
            row["val_acc"] = val["accuracy"]
            if "supcon_loss" in val:
                row["select_supcon"] = val["supcon_loss"]
    elif selects:   # supcon stage 1: the SupCon loss of the selection fold, the released code's criterion
        on_test = o.stage2_start == "best_test"
        row["select_supcon"] = evaluate(s.model, s.pipeline, s.bank, s.split.test if on_test else s.split.val, s.device,
                                        outputs=False, cache=s.eval_cache["test" if on_test else "val"],
                                        supcon=supcon_options(s.cfg), **common)["supcon_loss"]
    if "select_supcon" in row and (s.stage1_best is None or row["select_supcon"] <= s.stage1_best["supcon_loss"]):
        # ties move to the later epoch, as the released code's early stopping does
        s.stage1_best = {"epoch": row["epoch"], "supcon_loss": row["select_supcon"],
                         "state": {k: v.detach().clone() for k, v in s.model.state_dict().items()}}
    row["seconds"] += time.time() - t0


def record_epoch(s: TrainingState, row: dict) -> None:
    """Append ``row`` to ``metrics.jsonl`` (rewritten whole, atomically) and save a checkpoint when
    one is due (``checkpoint_every`` epochs and ``checkpoint_seconds`` since the last)."""
    s.rows.append(row)
    if s.rank != 0:
        return
    atomic_write_bytes(s.run_dir / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in s.rows).encode())
    r, epoch = s.cfg.run, row["epoch"]
    due = epoch % max(1, r.checkpoint_every) == 0 and time.time() - s.last_checkpoint >= r.checkpoint_seconds
    if due and epoch < s.total_epochs:
        save_checkpoint(s, epoch)


def finish(s: TrainingState) -> dict:
    """The final model's test-fold outputs, the summary (written last: it marks the run finished)."""
    final = s.final
    if final is None:   # resumed after the last epoch's evaluation but before the summary was written
        final = evaluate(s.model, s.pipeline, s.bank, s.split.test, s.device, memory_format=s.memory_format,
                         batch_size=eval_batch_size(s.cfg), autocast=s.bf16)
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


def finished_summary(cfg: Config, run_dir: Path) -> dict:
    """The summary of a finished run, which must be of this configuration."""
    summary = read_json(run_dir / "summary.json")
    if summary.get("identity") != cfg.identity():
        raise RuntimeError(f"{run_dir} holds a finished run of a different configuration ({summary.get('identity')} != "
                           f"{cfg.identity()}): use another results folder or delete it")
    return summary


class _Progress:
    """A progress bar (``progress``) and a log line at most every ``log_seconds`` (``log``), on rank 0."""

    def __init__(self, s: TrainingState, progress: bool, log, log_seconds: float):
        c = s.cfg
        self.name = f"{c.data.dataset} {c.run.scheme} fold {c.run.test_fold} seed {c.run.seed}"
        self.total, self.log, self.log_seconds, self.last = s.total_epochs, log if s.rank == 0 else None, log_seconds, time.time()
        self.bar = (tqdm(total=s.total_epochs, initial=s.start_epoch, desc=self.name, unit="epoch")
                    if progress and s.rank == 0 else None)

    def epoch(self, row: dict) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{row['train_loss']:.3f}", test=f"{row.get('test_acc') or 0:.3f}")
        if self.log is not None and (time.time() - self.last >= self.log_seconds or row["epoch"] == self.total):
            self.last = time.time()
            test = f", test {100 * row['test_acc']:.1f} %" if row.get("test_acc") is not None else ""
            self.log(f"{self.name}: epoch {row['epoch']}/{self.total}, loss {row['train_loss']:.3f}{test}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
