"""Counter-based random numbers: every random choice of a clip is a function of its int64 key.

splitmix64 written in torch int64 ops (multiplication wraps modulo 2^64; ``>>`` is arithmetic, so
the unsigned shifts are a shift and a mask). A batch gives exactly what its clips give one by
one with the same keys, and CPU and CUDA draw the same numbers.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["random_bits", "randint"]


# ---------------------------------------------------------------------------------------
# Counter-based random numbers: splitmix64 in int64 torch ops.
# torch int64 multiplication wraps modulo 2^64 and ">>" is an arithmetic shift, so the
# unsigned shifts of splitmix64 are done as a shift followed by a mask.
# ---------------------------------------------------------------------------------------
_U64 = (1 << 64) - 1


def _int64(value: int) -> int:
    """The int64 (two's complement) with the same low 64 bits as ``value``."""
    value &= _U64
    return value - (1 << 64) if value >> 63 else value


_GOLDEN = 0x9E3779B97F4A7C15


_MIX1 = _int64(0xBF58476D1CE4E5B9)


_MIX2 = _int64(0x94D049BB133111EB)


def shr(z: Tensor, k: int) -> Tensor:
    """Logical (unsigned) right shift of int64 values."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def _mix64(z: Tensor) -> Tensor:
    z = (z ^ shr(z, 30)) * _MIX1
    z = (z ^ shr(z, 27)) * _MIX2
    return z ^ shr(z, 31)


def random_bits(keys: Tensor, draw: int | range) -> Tensor:
    """63 random bits per clip: int64 in [0, 2^63), a function of (key, draw) only.

    ``splitmix64(splitmix64(key) + (draw + 1) * golden)`` shifted right by one, i.e. draw
    number ``draw`` of a splitmix64 stream seeded with the hashed key. ``keys`` is
    ``(batch,)``; an int ``draw`` gives ``(batch,)``, a range of draws ``(batch, len(draw))``
    (in one set of tensor ops).
    """
    if isinstance(draw, int):
        return shr(_mix64(_mix64(keys) + _int64((draw + 1) * _GOLDEN)), 1)
    offsets = torch.tensor([_int64((d + 1) * _GOLDEN) for d in draw], dtype=torch.int64, device=keys.device)
    return shr(_mix64(_mix64(keys)[:, None] + offsets), 1)


def randint(keys: Tensor, draw: int, n: Tensor | int) -> Tensor:
    """Per-clip integers uniform in {0, ..., n-1}: ``(batch,)`` int64 (``n >= 1``, bias < 2^-40)."""
    return random_bits(keys, draw) % n


def keys_or_global(keys: Tensor | None, batch: int, device: torch.device) -> Tensor:
    """A stage used alone without keys draws them from torch's global generator."""
    if keys is None:
        keys = torch.randint(-(2 ** 63), 2 ** 63 - 1, (batch,), dtype=torch.int64)
    if keys.shape != (batch,):
        raise ValueError(f"soundclr.audio: keys must have shape (batch,) = ({batch},), found {tuple(keys.shape)}; "
                         "pass one int64 key per clip or None")
    return keys.to(device=device, dtype=torch.int64)
