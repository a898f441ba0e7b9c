"""The kernels behind the wave stages: one gather reads a trimmed, scaled, padded or cropped clip.

Shapes: waves ``(batch, samples)`` int16 or float32, lengths ``(batch,)`` int64. Positions are
32.32 fixed-point int64, so lengths, offsets and interpolation positions are the same integers on
every device, and each output sample is a fixed sequence of single float32 operations.
"""
from __future__ import annotations

import sys

import torch
from torch import Tensor

from .io import INT16_SCALE

# ---------------------------------------------------------------------------------------
# Wave helpers
# ---------------------------------------------------------------------------------------
FROM_INT16 = 1.0 / INT16_SCALE   # 2 ** -15: int16 to full scale by one multiplication, exact (INT16_SCALE is its inverse)


def check_waves(waves: Tensor, lengths: Tensor | None, where: str, validate: bool = True) -> tuple[Tensor, Tensor]:
    if waves.dim() != 2:
        raise ValueError(f"soundclr.audio.{where}: waves must be (batch, samples), found shape {tuple(waves.shape)}; "
                         "add a batch dimension with waves[None] for a single clip")
    if waves.is_floating_point() and waves.dtype != torch.float32:
        waves = waves.to(torch.float32)
    elif not waves.is_floating_point() and waves.dtype != torch.int16:
        raise ValueError(f"soundclr.audio.{where}: waves must be int16 or float, found {waves.dtype}")
    if waves.shape[1] == 0:  # keeps every gather in range; the clip is silent
        waves = waves.new_zeros(waves.shape[0], 1)
        lengths = torch.zeros(waves.shape[0], dtype=torch.int64, device=waves.device)
    if lengths is None:
        lengths = torch.full((waves.shape[0],), waves.shape[1], dtype=torch.int64, device=waves.device)
    if lengths.shape != (waves.shape[0],):
        raise ValueError(f"soundclr.audio.{where}: lengths must be (batch,) = ({waves.shape[0]},), "
                         f"found {tuple(lengths.shape)}")
    lengths = lengths.to(device=waves.device, dtype=torch.int64)
    # The range check reads a value on the host, so it is skipped for trusted input (a WaveBank's,
    # in the training loop) and on accelerators, where we clamp instead so that no batch waits for a sync.
    if validate and lengths.device.type == "cpu" and bool(((lengths < 0) | (lengths > waves.shape[1])).any()):
        raise ValueError(f"soundclr.audio.{where}: lengths must lie in [0, {waves.shape[1]}] (the samples "
                         f"dimension of waves), found {lengths.tolist()}")
    return waves, lengths.clamp(0, waves.shape[1])


def padded_float(waves: Tensor) -> Tensor:
    """float32 full-scale copy of ``waves`` with two zero samples appended: ``(batch, samples + 2)``.

    The right neighbour of a clip's last sample can then be read without a bounds check
    (with interpolation weight exactly 0), and an empty clip reads the zeros.
    """
    n = waves.shape[1]
    out = waves.new_empty(waves.shape[0], n + 2, dtype=torch.float32)
    out[:, n:] = 0
    if waves.dtype == torch.int16:
        torch.mul(waves, FROM_INT16, out=out[:, :n])         # exact: a power of two
    else:
        out[:, :n] = waves
    return out


def _fraction(position: Tensor) -> Tensor:
    """The fractional part of 32.32 fixed-point ``position`` (int64 >= 0) as float32 in [0, 1]."""
    if position.device.type == "cpu" and sys.byteorder == "little" and position.is_contiguous():
        low = position.view(torch.uint32)[..., 0::2]            # the low words: one pass instead of two
    else:
        low = position & 0xFFFFFFFF
    return torch.mul(low, 2.0 ** -32)                           # float32: rounded to 24 bits, then exact


def read_segment(source: Tensor, start: Tensor, length: Tensor, step: Tensor | None, shift: Tensor,
          new_length: Tensor, out_samples: int, pad: str) -> Tensor:
    """The one gather behind every wave step: float32 ``(batch, out_samples)``.

    ``source`` is ``padded_float(waves)`` (two zeros appended). Clip ``b`` is the segment
    ``waves[b, start : start + length]`` resampled to ``new_length`` samples: sample ``j``
    sits at position ``min(j * step / 2^32, length - 1)`` of the segment (linear
    interpolation, as ``np.interp``; ``step=None``: no resampling). Output sample ``t`` is
    the resampled clip's sample ``j = t + shift``; where ``j`` falls outside the clip the
    output is 0 (``pad="zero"``) or the nearest end sample (``pad="edge"``).
    Samples past a clip's length do not change the result as long as they are finite (the
    right neighbour of a clip's last sample is read with weight 0).
    """
    t = torch.arange(out_samples, device=source.device)
    shift, new_length = shift[:, None], new_length[:, None]
    last = (length - 1).clamp(min=0)[:, None]
    start = torch.where(length > 0, start, source.shape[1] - 2)     # an empty clip reads the appended zeros
    if step is None:   # new_length == length
        index = t + shift
        index.clamp_(min=0)
        torch.minimum(index, last, out=index)
        out = source.gather(1, index.add_(start[:, None]))
    else:
        step, first = step[:, None], start[:, None] << 32
        if pad == "edge":   # repeat the resampled clip's end samples: clamp j, not the position
            position = (t + shift).clamp_(min=0)
            torch.minimum(position, (new_length - 1).clamp(min=0), out=position)
            position.mul_(step).add_(first)
        else:                                                   # start + (t + shift) * step, 32.32 fixed point
            position = torch.addcmul(shift * step + first, t, step)
        position.clamp_(min=first, max=first + (last << 32))    # past the end: the last sample
        frac = _fraction(position)
        i0 = position.bitwise_right_shift_(32)
        a = source.gather(1, i0)
        b = source[:, 1:].gather(1, i0)                         # right neighbour, weight 0 at the clip's end
        out = b.sub_(a).mul_(frac).add_(a)                      # separate ops: no device-dependent FMA
    if pad == "zero":
        out.masked_fill_(_outside(-shift, new_length - shift, out_samples), 0)
    return out


def _outside(begin: Tensor, end: Tensor, size: int) -> Tensor:
    """``(batch, size)`` bool: not ``begin[b] <= t < end[b]``, from ``(batch, 1)`` bounds.

    Built as a running sum (int8 scan) of 1 at t = 0, -1 at ``begin`` and +1 at ``end``:
    cheaper than two comparisons and a logical or over every sample.
    """
    begin, end = begin.clamp(0, size), end.clamp(0, size)
    end = torch.maximum(begin, end)
    steps = torch.zeros(begin.shape[0], size + 1, dtype=torch.int8, device=begin.device)
    steps[:, 0] = 1
    steps.scatter_add_(1, begin, torch.full_like(begin, -1, dtype=torch.int8))
    steps.scatter_add_(1, end, torch.ones_like(end, dtype=torch.int8))
    return steps.cumsum(1, dtype=torch.int8)[:, :size].view(torch.bool)


BLOCK = 256   # samples per block in the search for a clip's first and last kept sample


def first_last(keep: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """First and last True index before each row's length, and whether there is one.

    ``keep`` is ``(batch, blocks * 256)`` bool. Blocks of 256 first (8 flags at a time, as
    int64 words), then the first and last non-empty block sample by sample: a couple of
    passes over bytes instead of an argmax over every sample. Flags past the length are
    ignored: whole blocks at the block level, the block holding the end by refining it.
    """
    batch, n = keep.shape
    count = n // BLOCK
    blocks = keep.view(torch.int64).view(batch, count, BLOCK // 8).ne(0).any(2)
    end_block = lengths // BLOCK                                          # the block where the clip ends
    blocks &= torch.arange(count, device=keep.device) < end_block[:, None]
    within = torch.arange(BLOCK, device=keep.device)
    at = end_block.clamp(max=count - 1)[:, None]
    partial = (keep.gather(1, at * BLOCK + within) & (at * BLOCK + within < lengths[:, None])).any(1, keepdim=True)
    blocks.scatter_(1, at, torch.where((end_block < count)[:, None], partial, blocks.gather(1, at)))
    found = blocks.any(1)
    first_block = blocks.view(torch.uint8).argmax(1)[:, None]              # argmax: the first maximum
    last_block = count - 1 - blocks.flip(1).view(torch.uint8).argmax(1)[:, None]
    head = keep.gather(1, first_block * BLOCK + within) & (first_block * BLOCK + within < lengths[:, None])
    tail = keep.gather(1, last_block * BLOCK + within) & (last_block * BLOCK + within < lengths[:, None])
    first = first_block[:, 0] * BLOCK + head.view(torch.uint8).argmax(1)
    last = last_block[:, 0] * BLOCK + BLOCK - 1 - tail.flip(1).view(torch.uint8).argmax(1)
    return first, last, found


def gather_clips(waves: Tensor, start: Tensor, length: Tensor) -> Tensor:
    """Each clip's segment ``waves[b, start : start + length]`` moved to index 0, zero after its length.

    ``(batch, max(length))``, dtype kept (the trim step alone).
    """
    out_samples = max(int(length.max()), 1) if length.numel() else 1
    t = torch.arange(out_samples, device=waves.device)
    index = torch.minimum(t, (length - 1).clamp(min=0)[:, None]).add_(start[:, None])
    return waves.gather(1, index).masked_fill_(t >= length[:, None], 0)


def add_noise(clips: Tensor, std: float, generator: torch.Generator | None) -> None:
    """Add white Gaussian noise of standard deviation ``std`` to ``clips`` (batch, samples) in place,
    drawn on the CPU (the same numbers on every device), then clip to [-1, 1] as a sound file would."""
    noise = torch.randn(clips.shape, generator=generator).mul_(std)
    clips.add_(noise.to(clips.device, non_blocking=True)).clamp_(-1.0, 1.0)
