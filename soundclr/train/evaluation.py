"""Deterministic evaluation of a model on a set of clips: accuracy, and the outputs the record keeps
(softmax, representations, projections), optionally with white noise added (paper Sec. IV-E).
"""
from __future__ import annotations

from typing import Any

import torch

from ..config import Config, frames
from ..losses import supcon_loss


# -- batches ----------------------------------------------------------------------------
def lengths_cpu(bank) -> torch.Tensor:
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

    was_training = model.training, pipeline.training
    model.eval(), pipeline.eval()
    idx_cpu = torch.as_tensor(indices, dtype=torch.long).cpu()
    idx_dev = idx_cpu.to(bank.waves.device)
    chunks = idx_cpu.split(batch_size)
    widths = torch.stack([lengths_cpu(bank)[c].amax() for c in chunks]).tolist() if len(idx_cpu) else []
    gen = torch.Generator().manual_seed(noise_seed)
    logits, reps, projs = [], [], []
    reuse = cache is not None and noise_std == 0
    for b, start in enumerate(range(0, len(idx_cpu), batch_size)):
        x = cache.get(b) if reuse else None
        if x is None:
            waves, lengths = bank.batch(idx_dev[start:start + batch_size], device, width=max(widths[b], 1))
            x = pipeline(waves, lengths, noise_std=noise_std, noise_generator=gen, validate=False)
            x = x.contiguous(memory_format=memory_format)    # the model's layout (memory_format_for)
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


EVAL_CACHE_BYTES = 1 << 30   # keep the evaluation inputs of a run when they take at most this much memory


def eval_batch_size(cfg: Config) -> int:
    """Clips per evaluation batch: twice the training batch, at least 64. Every evaluation of a run uses it,
    so the clean accuracy of the noise evaluation is the run's final accuracy to the last bit."""
    return max(cfg.optim.batch_size * 2, 64)


def eval_cacheable(cfg: Config, split) -> bool:
    """Whether the evaluation inputs of the held-out folds fit in ``EVAL_CACHE_BYTES`` (then they are kept)."""
    c = cfg.resolved()
    clips = len(split.test) + (len(split.val) if split.val is not None else 0)
    return clips * c.features.channels * c.features.n_mels * frames(c) * 4 <= EVAL_CACHE_BYTES


def supcon_options(cfg: Config) -> dict:
    o = cfg.optim
    return {"temperature": o.temperature, "form": o.supcon_form, "no_positive": o.no_positive}
