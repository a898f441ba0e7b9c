"""RTDOC
"""
from __future__ import annotations

import os
import torch

from ..config import Config, setting_spelling



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


def memory_format_for(device: torch.device, compiled: bool) -> torch.memory_format:
    """The model's layout. Channels-last (NHWC) convolutions are faster with cuDNN, and with oneDNN on a CPU
    too (a third off a tiny-backbone step on one core). Not for a compiled model on a CPU: torch 2.11's
    inductor generates a CPU backward for channels-last BatchNorm that fails (UnboundLocalError in the
    generated code; tests/test_host_reads.py trains one compiled run), and it picks its own layout."""
    return torch.contiguous_format if compiled and device.type == "cpu" else torch.channels_last


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


class Terminated(KeyboardInterrupt):
    """SIGTERM (SLURM sends it before pre-empting a job or at its time limit), raised like Ctrl-C."""


def raise_terminated(signum, frame):
    raise Terminated()
