"""Where a run executes: the device, the precision, the memory layout, DDP across processes, and
termination by SIGTERM (SLURM's warning before it pre-empts a job).

Under ``torchrun`` (WORLD_SIZE > 1) every rank draws the same global batch and augmentation keys,
takes its slice, and the loss is computed on the outputs gathered from all ranks
(:func:`gather_output`), so the gradient equals the single-process one (up to BatchNorm
statistics, which are per rank unless SyncBatchNorm is available on the device).
"""
from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch.distributed.nn.functional import all_gather

from .. import schemes
from ..config import Config, setting_spelling
from ..model import ModelOutput


# -- devices and distributed ------------------------------------------------------
def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
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
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and os.environ.get("SOUNDCLR_BACKEND") != "gloo" else "gloo"
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def gather(t: torch.Tensor, world: int) -> torch.Tensor:
    """Concatenate a tensor from all ranks, keeping the gradient path to the local part."""
    if world == 1:
        return t
    return torch.cat(all_gather(t), dim=0)


def memory_format_for(device: torch.device, compiled: bool) -> torch.memory_format:
    """The model's layout. Channels-last (NHWC) convolutions are faster with cuDNN, and with oneDNN on a CPU
    too (a third off a tiny-backbone step on one core). Not for a compiled model on a CPU: torch 2.11's
    inductor generates a CPU backward for channels-last BatchNorm that fails (UnboundLocalError in the
    generated code; tests/test_host_reads.py trains one compiled run), and it picks its own layout."""
    return torch.contiguous_format if compiled and device.type == "cpu" else torch.channels_last


def stage2_output(logits: torch.Tensor) -> ModelOutput:
    """The outputs of a stage-2 step: only the classifier's logits (the encoder is frozen)."""
    return ModelOutput(representation=None, projection=None, logits=logits)


def wrap_distributed(model: torch.nn.Module, device: torch.device, scheme: str) -> torch.nn.Module:
    """``model`` under DistributedDataParallel, its BatchNorm layers made SyncBatchNorm on CUDA (in place:
    ``model`` keeps its parameters), so every rank normalises with the whole batch's statistics. The hybrid
    loss uses every parameter; the other schemes leave a head unused, which DDP must be told
    (:attr:`soundclr.schemes.Scheme.uses_every_parameter`)."""
    if device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=not schemes.get(scheme).uses_every_parameter)


def gather_output(out: ModelOutput, world: int) -> ModelOutput:
    """Under DDP: the logits and projections of every rank's slice, concatenated (gradients flow to
    this rank's part), so the loss is that of the whole batch."""
    if world == 1:
        return out
    return ModelOutput(representation=None, logits=gather(out.logits, world),
                       projection=gather(out.projection, world) if out.projection is not None else None)


def allreduce_grads(module, world: int) -> None:
    """Average the gradients of ``module`` over the ranks (stage 2 trains the classifier outside DDP)."""
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


class Terminated(KeyboardInterrupt):
    """SIGTERM (SLURM sends it before pre-empting a job or at its time limit), raised like Ctrl-C."""


def raise_terminated(signum, frame):
    raise Terminated()


@contextmanager
def sigterm_raises():
    """Within the block, SIGTERM raises :class:`Terminated` (so a worker releases its lease and a run
    resumes later), when this is the main thread and no one else handles SIGTERM; the previous handler
    is restored afterwards."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
        yield
        return
    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
