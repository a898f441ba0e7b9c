"""The training step, written once: the loop and the benchmarks call :func:`train_step` (or its
model half, :func:`model_step`, where the inputs are made beforehand); the tuning study trains through the loop.

The schemes differ in one place, :func:`scheme_loss`, which calls the registered scheme's loss
(:mod:`soundclr.schemes`: the paper's ``ce``, Eq. 2; ``supcon``, Eq. 3 in stage 1; ``hybrid``, Eq. 4;
and any a plugin registers). Stage 2 of a two-stage scheme trains a linear classifier on the frozen
encoder with cross-entropy (h is computed without gradients).

The schedule is the released code's (:func:`lr_factor`) and the optimiser AdamW or Adam
(:func:`make_optimizer`). Nothing here reads a tensor's value on the host.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .. import losses, schemes
from ..config import Config
from .runtime import allreduce_grads, gather_output, stage2_output


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


def scheme_loss(cfg: Config, stage: int, out, labels: Tensor) -> Tensor:
    """The scheme's loss of one batch: ``out`` has ``logits (batch, classes)`` and ``projection
    (batch, P)`` (None in stage 2); ``labels (batch,)``. Returns a scalar tensor."""
    if stage == 2:
        return losses.cross_entropy_loss(out.logits, labels)                       # Eq. 2, on the frozen encoder
    return schemes.get(cfg.run.scheme).loss(cfg, out, labels)


def train_step(cfg: Config, net, pipeline, optimizer: torch.optim.Optimizer, waves: Tensor, lengths: Tensor,
               labels: Tensor, keys: Tensor, *, stage: int = 1, model=None, world: int = 1, bf16: bool = False,
               memory_format: torch.memory_format = torch.channels_last) -> tuple[Tensor, Tensor | None]:
    """One optimiser step on one batch of waves: the augmentation pipeline, then :func:`model_step`.

    ``waves (local batch, samples)`` int16 and ``lengths (local batch,)`` are this process's slice of
    the batch, ``keys (local batch,)`` its augmentation keys, ``labels (batch,)`` the whole batch's
    (under DDP the outputs of every rank are gathered before the loss). Returns what
    :func:`model_step` returns.
    """
    with torch.no_grad():
        x = pipeline(waves, lengths, keys=keys, validate=False)
    return model_step(cfg, net, optimizer, x.contiguous(memory_format=memory_format), labels, stage=stage,
                      model=model, world=world, bf16=bf16)


def model_step(cfg: Config, net, optimizer: torch.optim.Optimizer, x: Tensor, labels: Tensor, *, stage: int = 1,
               model=None, world: int = 1, bf16: bool = False) -> tuple[Tensor, Tensor | None]:
    """One optimiser step on model inputs ``x (local batch, channels, mels, frames)``: forward (bf16
    autocast when ``bf16``), the scheme's loss, backward, update. Returns the loss (a detached scalar
    tensor) and the logits ``(batch, classes)``, both left on the device.

    ``net`` is what stage 1 calls (the model, or it wrapped in DDP and/or compiled); ``model`` the
    bare model (stage 2 reads its encoder and classifier; default ``net``).
    """
    model = net if model is None else model
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        if stage == 1:
            out = net(x)
        else:
            with torch.no_grad():
                h = model.represent(x)               # frozen encoder: no graph, no backward through it
            out = stage2_output(model.classifier(h))
    out = gather_output(out, world)
    loss = scheme_loss(cfg, stage, out, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if stage == 2 and world > 1:
        allreduce_grads(model.classifier, world)
    optimizer.step()
    return loss.detach(), (out.logits.detach() if out.logits is not None else None)
