"""The augmentation and feature pipeline of the paper (Sec. III-A, Fig. 2), batched on any device.

Fig. 2 of the paper, one ``nn.Module`` per step, each usable alone::

    waves (batch, samples) int16 or float, lengths (batch,)
      -> SilenceTrim   strip silent beginnings and ends             (batch, samples') + lengths
      -> RandomScale   resample by s = scale_max^U(-1, 1)           (batch, samples'') + lengths
      -> PadCrop       pad or crop to clip_samples                  (batch, clip_samples)
      -> LogMel        log-mel spectrogram, dB below the clip's max (batch, mels, frames)
      -> FreqTimeMask  f frequency masks and t time masks           (batch, mels, frames)
      -> ToChannels    copy to 1 or 3 channels                      (batch, channels, mels, frames)

:class:`Pipeline` composes them. Its ``forward`` fuses the three wave steps into one
gather (trim, scale and pad/crop only move and interpolate samples, so the output
sample ``t`` of clip ``b`` reads the input at one computable position); ``trace`` runs
the stages one by one and returns every intermediate, and gives the same output.

Randomness. Every random choice of a clip is a function of that clip's int64 key and a
fixed draw number, through the splitmix64 mixer written in torch integer ops
(:func:`random_bits`). So a batch gives exactly what its clips give one by one with the
same keys, CPU and CUDA draw the same numbers, and nothing depends on the batch's
composition. The scale factors are looked up in a table of 2^16 values (computed once,
in float64) and positions are 32.32 fixed-point integers, so lengths, offsets and
interpolation positions are the same integers on every device, and each wave sample is
then a fixed sequence of single IEEE float operations (no fused kernels), so CPU and CUDA
give the same waves (the CUDA test checks it bit for bit; the spectrograms agree to FFT
rounding). Keys not given are drawn from ``Pipeline.generator`` (a seeded CPU
``torch.Generator``, one draw per training batch).

Modes. ``train()``: augmentation as configured. ``eval()``: deterministic: the silence
trim still applies (it is deterministic and the model was trained on trimmed clips),
no scaling, centred pad/crop, no masks, and no key is drawn.

Example::

    cfg = soundclr.preset("paper", dataset="esc50").resolved()
    pipeline = Pipeline.from_config(cfg).to("cuda")
    x = pipeline(bank.waves[idx].cuda(), bank.lengths[idx].cuda())   # (batch, 3, 128, 431)
"""
from __future__ import annotations

import sys

import torch
import torchaudio
from torch import Tensor, nn

from .config import AugmentConfig, Config, FeatureConfig
from .data import INT16_SCALE, to_float  # the data layer owns the int16 scale

__all__ = ["Pipeline", "SilenceTrim", "RandomScale", "PadCrop", "LogMel", "FreqTimeMask",
           "ToChannels", "random_bits", "randint", "to_float"]

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


def _shr(z: Tensor, k: int) -> Tensor:
    """Logical (unsigned) right shift of int64 values."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def _mix64(z: Tensor) -> Tensor:
    z = (z ^ _shr(z, 30)) * _MIX1
    z = (z ^ _shr(z, 27)) * _MIX2
    return z ^ _shr(z, 31)


def random_bits(keys: Tensor, draw: int | range) -> Tensor:
    """63 random bits per clip: int64 in [0, 2^63), a function of (key, draw) only.

    ``splitmix64(splitmix64(key) + (draw + 1) * golden)`` shifted right by one, i.e. draw
    number ``draw`` of a splitmix64 stream seeded with the hashed key. ``keys`` is
    ``(batch,)``; an int ``draw`` gives ``(batch,)``, a range of draws ``(batch, len(draw))``
    (in one set of tensor ops).
    """
    if isinstance(draw, int):
        return _shr(_mix64(_mix64(keys) + _int64((draw + 1) * _GOLDEN)), 1)
    offsets = torch.tensor([_int64((d + 1) * _GOLDEN) for d in draw], dtype=torch.int64, device=keys.device)
    return _shr(_mix64(_mix64(keys)[:, None] + offsets), 1)


def randint(keys: Tensor, draw: int, n: Tensor | int) -> Tensor:
    """Per-clip integers uniform in {0, ..., n-1}: ``(batch,)`` int64 (``n >= 1``, bias < 2^-40)."""
    return random_bits(keys, draw) % n


def _keys_or_global(keys: Tensor | None, batch: int, device: torch.device) -> Tensor:
    """A stage used alone without keys draws them from torch's global generator."""
    if keys is None:
        keys = torch.randint(-(2 ** 63), 2 ** 63 - 1, (batch,), dtype=torch.int64)
    if keys.shape != (batch,):
        raise ValueError(f"soundclr.augment: keys must have shape (batch,) = ({batch},), found {tuple(keys.shape)}; "
                         "pass one int64 key per clip or None")
    return keys.to(device=device, dtype=torch.int64)


# ---------------------------------------------------------------------------------------
# Wave helpers
# ---------------------------------------------------------------------------------------
_INT16_SCALE = 1.0 / INT16_SCALE  # 2 ** -15: multiplying by it is exact


def _check_waves(waves: Tensor, lengths: Tensor | None, where: str, validate: bool = True) -> tuple[Tensor, Tensor]:
    if waves.dim() != 2:
        raise ValueError(f"soundclr.augment.{where}: waves must be (batch, samples), found shape {tuple(waves.shape)}; "
                         "add a batch dimension with waves[None] for a single clip")
    if waves.is_floating_point() and waves.dtype != torch.float32:
        waves = waves.to(torch.float32)
    elif not waves.is_floating_point() and waves.dtype != torch.int16:
        raise ValueError(f"soundclr.augment.{where}: waves must be int16 or float, found {waves.dtype}")
    if waves.shape[1] == 0:  # keeps every gather in range; the clip is silent
        waves = waves.new_zeros(waves.shape[0], 1)
        lengths = torch.zeros(waves.shape[0], dtype=torch.int64, device=waves.device)
    if lengths is None:
        lengths = torch.full((waves.shape[0],), waves.shape[1], dtype=torch.int64, device=waves.device)
    if lengths.shape != (waves.shape[0],):
        raise ValueError(f"soundclr.augment.{where}: lengths must be (batch,) = ({waves.shape[0]},), "
                         f"found {tuple(lengths.shape)}")
    lengths = lengths.to(device=waves.device, dtype=torch.int64)
    # The range check reads a value on the host, so it is skipped for trusted input (a WaveBank's,
    # in the training loop) and on accelerators, where we clamp instead so that no batch waits for a sync.
    if validate and lengths.device.type == "cpu" and bool(((lengths < 0) | (lengths > waves.shape[1])).any()):
        raise ValueError(f"soundclr.augment.{where}: lengths must lie in [0, {waves.shape[1]}] (the samples "
                         f"dimension of waves), found {lengths.tolist()}")
    return waves, lengths.clamp(0, waves.shape[1])


def _padded_float(waves: Tensor) -> Tensor:
    """float32 full-scale copy of ``waves`` with two zero samples appended: ``(batch, samples + 2)``.

    The right neighbour of a clip's last sample can then be read without a bounds check
    (with interpolation weight exactly 0), and an empty clip reads the zeros.
    """
    n = waves.shape[1]
    out = waves.new_empty(waves.shape[0], n + 2, dtype=torch.float32)
    out[:, n:] = 0
    if waves.dtype == torch.int16:
        torch.mul(waves, _INT16_SCALE, out=out[:, :n])         # exact: a power of two
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


def _read(source: Tensor, start: Tensor, length: Tensor, step: Tensor | None, shift: Tensor,
          new_length: Tensor, out_samples: int, pad: str) -> Tensor:
    """The one gather behind every wave step: float32 ``(batch, out_samples)``.

    ``source`` is ``_padded_float(waves)`` (two zeros appended). Clip ``b`` is the segment
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


_BLOCK = 256   # samples per block in the search for a clip's first and last kept sample


def _first_last(keep: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """First and last True index before each row's length, and whether there is one.

    ``keep`` is ``(batch, blocks * 256)`` bool. Blocks of 256 first (8 flags at a time, as
    int64 words), then the first and last non-empty block sample by sample: a couple of
    passes over bytes instead of an argmax over every sample. Flags past the length are
    ignored: whole blocks at the block level, the block holding the end by refining it.
    """
    batch, n = keep.shape
    count = n // _BLOCK
    blocks = keep.view(torch.int64).view(batch, count, _BLOCK // 8).ne(0).any(2)
    end_block = lengths // _BLOCK                                          # the block where the clip ends
    blocks &= torch.arange(count, device=keep.device) < end_block[:, None]
    within = torch.arange(_BLOCK, device=keep.device)
    at = end_block.clamp(max=count - 1)[:, None]
    partial = (keep.gather(1, at * _BLOCK + within) & (at * _BLOCK + within < lengths[:, None])).any(1, keepdim=True)
    blocks.scatter_(1, at, torch.where((end_block < count)[:, None], partial, blocks.gather(1, at)))
    found = blocks.any(1)
    first_block = blocks.view(torch.uint8).argmax(1)[:, None]              # argmax: the first maximum
    last_block = count - 1 - blocks.flip(1).view(torch.uint8).argmax(1)[:, None]
    head = keep.gather(1, first_block * _BLOCK + within) & (first_block * _BLOCK + within < lengths[:, None])
    tail = keep.gather(1, last_block * _BLOCK + within) & (last_block * _BLOCK + within < lengths[:, None])
    first = first_block[:, 0] * _BLOCK + head.view(torch.uint8).argmax(1)
    last = last_block[:, 0] * _BLOCK + _BLOCK - 1 - tail.flip(1).view(torch.uint8).argmax(1)
    return first, last, found


def _gather_clips(waves: Tensor, start: Tensor, length: Tensor) -> Tensor:
    """Each clip's segment ``waves[b, start : start + length]`` moved to index 0, zero after its length.

    ``(batch, max(length))``, dtype kept (the trim step alone).
    """
    out_samples = max(int(length.max()), 1) if length.numel() else 1
    t = torch.arange(out_samples, device=waves.device)
    index = torch.minimum(t, (length - 1).clamp(min=0)[:, None]).add_(start[:, None])
    return waves.gather(1, index).masked_fill_(t >= length[:, None], 0)


# ---------------------------------------------------------------------------------------
# The stages
# ---------------------------------------------------------------------------------------
class SilenceTrim(nn.Module):
    """Step 1: remove the silent beginning and end of each clip.

    Args:
        rule: ``"zeros"`` strips leading/trailing samples that are exactly 0 (the released
            code); ``"threshold"`` strips leading/trailing samples whose magnitude is more
            than ``trim_db`` dB below the clip's peak (sample-wise ``|x|``, no framing);
            ``"none"`` keeps the clip.
        trim_db: threshold of the ``"threshold"`` rule, dB below the peak.

    A clip with nothing to keep (all zeros, or length 0) is kept whole, so later steps see
    its original length. The trim is deterministic, so it applies in train and eval mode.

    ``forward(waves (batch, samples), lengths (batch,)) -> (waves (batch, max_length), lengths)``;
    the dtype is kept and each clip starts at index 0, zero after its length. Example::

        trimmed, lengths = SilenceTrim("zeros")(waves, lengths)
    """

    def __init__(self, rule: str = "zeros", trim_db: float = 60.0):
        super().__init__()
        if rule not in ("zeros", "threshold", "none"):
            raise ValueError(f"SilenceTrim: rule (config field 'trim') must be 'zeros', 'threshold' or 'none', found {rule!r}")
        self.rule, self.trim_db = rule, float(trim_db)

    def bounds(self, waves: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Per-clip ``start`` and ``length`` of the kept segment, ``(batch,)`` int64 each."""
        batch, n = waves.shape
        if self.rule == "none":
            return torch.zeros_like(lengths), lengths
        # keep[b, i]: sample i is not silence; padded with False to whole blocks
        keep = waves.new_empty(batch, -(-n // _BLOCK) * _BLOCK, dtype=torch.bool)
        keep[:, n:] = False
        if self.rule == "zeros":
            torch.ne(waves, 0, out=keep[:, :n])
        else:
            x = waves.masked_fill(torch.arange(n, device=waves.device) >= lengths[:, None], 0)
            peak = torch.maximum(x.amax(1).float(), -x.amin(1).float())     # no int16 abs overflow at -32768
            threshold = (peak * 10.0 ** (-self.trim_db / 20.0)).clamp(min=torch.finfo(torch.float32).tiny)[:, None]
            torch.logical_or(x >= threshold, x <= -threshold, out=keep[:, :n])
        first, last, found = _first_last(keep, lengths)
        # nothing to keep (all zeros, all past the length): keep the clip whole
        return torch.where(found, first, 0), torch.where(found, last - first + 1, lengths)

    def forward(self, waves: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        waves, lengths = _check_waves(waves, lengths, "SilenceTrim")
        start, length = self.bounds(waves, lengths)
        return _gather_clips(waves, start, length), length

    def extra_repr(self) -> str:
        return f"rule={self.rule!r}, trim_db={self.trim_db}"


class RandomScale(nn.Module):
    """Step 2: random scaling, i.e. time-stretch and pitch-shift together.

    Each clip is linearly interpolated to ``round(length * s)`` samples, with
    ``s = max_scale ** U(-1, 1)`` drawn per clip (sample ``j`` of the result is the clip at
    position ``j / s``). ``s`` takes one of 2^16 values, computed once in float64, so that
    lengths and positions are exact integers on every device. ``max_scale=1`` or eval
    mode: identity.

    ``forward(waves (batch, samples), lengths (batch,), keys (batch,) | None)
    -> (float32 waves (batch, max_length), lengths)`` (int16 is read as full scale
    32768). Example::

        scaled, lengths = RandomScale(1.25)(waves, lengths, keys)
    """

    DRAW = 1
    LEVELS = 1 << 16

    def __init__(self, max_scale: float = 1.25):
        super().__init__()
        if not max_scale >= 1.0:
            raise ValueError(f"RandomScale: max_scale (config field 'scale_max') must be >= 1, found {max_scale}")
        self.max_scale = float(max_scale)
        exponent = [2.0 * (k + 0.5) / self.LEVELS - 1.0 for k in range(self.LEVELS)]
        # step = 2^32 / s in 32.32 fixed point, for each of the 2^16 equally likely exponents
        step = [round(2.0 ** 32 / self.max_scale ** e) for e in exponent]
        self.register_buffer("steps", torch.tensor(step, dtype=torch.int64), persistent=False)

    @property
    def active(self) -> bool:
        return self.training and self.max_scale != 1.0

    def factors(self, lengths: Tensor, keys: Tensor) -> tuple[Tensor | None, Tensor]:
        """Fixed-point steps ``2^32 / s`` and new lengths ``round(length * s)``, ``(batch,)`` int64.

        The step is None when the stage is inactive. ``2**32 / step`` is the factor ``s``.
        """
        if not self.active:
            return None, lengths
        step = self.steps.to(lengths.device)[_shr(random_bits(keys, self.DRAW), 63 - 16)]
        new_length = (lengths * (1 << 33) + step) // (2 * step)                # round(lengths * 2^32 / step)
        return step, torch.where(lengths > 0, new_length.clamp(min=1), 0)

    def forward(self, waves: Tensor, lengths: Tensor | None = None, keys: Tensor | None = None) -> tuple[Tensor, Tensor]:
        waves, lengths = _check_waves(waves, lengths, "RandomScale")
        if not self.active:
            return to_float(waves), lengths
        step, new_length = self.factors(lengths, _keys_or_global(keys, waves.shape[0], waves.device))
        zero = torch.zeros_like(lengths)
        out_samples = max(int(new_length.max()), 1) if new_length.numel() else 1
        return _read(_padded_float(waves), zero, lengths, step, zero, new_length, out_samples, "zero"), new_length

    def extra_repr(self) -> str:
        return f"max_scale={self.max_scale}"


class PadCrop(nn.Module):
    """Step 3: pad or crop every clip to ``clip_samples``.

    A clip longer than ``clip_samples`` is cropped, a shorter one padded. In train mode
    with ``random_crop`` the offset is uniform over all positions that keep the window
    inside the clip (crop) or the clip inside the window (pad); in eval mode, or with
    ``random_crop=False``, the clip is centred (deterministic). ``pad="edge"`` repeats the
    end samples (the released code, and the default of the configuration's ``pad``
    setting), ``pad="zero"`` pads with silence (this class's own default, for use alone).

    ``forward(waves (batch, samples), lengths (batch,), keys (batch,) | None)
    -> float32 waves (batch, clip_samples)``. Example::

        fixed = PadCrop(220500)(waves, lengths, keys)
    """

    DRAW = 2

    def __init__(self, clip_samples: int, random_crop: bool = True, pad: str = "zero"):
        super().__init__()
        if clip_samples <= 0:
            raise ValueError(f"PadCrop: clip_samples must be positive, found {clip_samples}")
        if pad not in ("zero", "edge"):
            raise ValueError(f"PadCrop: pad must be 'zero' or 'edge', found {pad!r}")
        self.clip_samples, self.random_crop, self.pad = int(clip_samples), bool(random_crop), pad

    def shifts(self, lengths: Tensor, keys: Tensor | None) -> Tensor:
        """Per-clip shift ``(batch,)`` int64: output sample t is input sample t + shift.

        A crop has shift in [0, length - clip_samples], a pad in [-(clip_samples - length), 0].
        """
        surplus = lengths - self.clip_samples
        if self.training and self.random_crop:
            offset = randint(keys, self.DRAW, surplus.abs() + 1)
            return torch.where(surplus >= 0, offset, -offset)
        return torch.where(surplus >= 0, surplus // 2, -((-surplus) // 2))

    def forward(self, waves: Tensor, lengths: Tensor | None = None, keys: Tensor | None = None) -> Tensor:
        waves, lengths = _check_waves(waves, lengths, "PadCrop")
        if self.training and self.random_crop:
            keys = _keys_or_global(keys, waves.shape[0], waves.device)
        zero = torch.zeros_like(lengths)
        return _read(_padded_float(waves), zero, lengths, None, self.shifts(lengths, keys), lengths,
                     self.clip_samples, self.pad)

    def extra_repr(self) -> str:
        return f"clip_samples={self.clip_samples}, random_crop={self.random_crop}, pad={self.pad!r}"


class LogMel(nn.Module):
    """Step 4: log-scaled mel spectrogram, in dB below each clip's maximum.

    Power spectrogram (``torch.stft``, ``center=True``: each end padded with ``n_fft // 2``
    samples, ``pad_mode="reflect"`` as librosa < 0.9 (the released code) or ``"constant"``
    (zeros) as librosa >= 0.9; periodic ``window`` of ``n_fft`` samples), Slaney mel filters
    with Slaney area norm (torchaudio's, as librosa's default), fmin 0, fmax sr/2; the power
    is that of the wave times ``amplitude_scale`` (the released code multiplies waves in
    [-1, 1] by 32768); then ``10 log10(max(S, 1e-10)) - 10 log10(max(max S, 1e-10))`` floored
    at ``-top_db``: as ``librosa.power_to_db(S, ref=np.max, amin=1e-10, top_db=80)``, values
    in [-top_db, 0]. The scale only matters where the ``amin`` floor bites: at scale 1 the
    silent cells of a quiet clip sit less than 80 dB below its peak. Computed in float32 even
    under autocast.

    ``forward(waves (batch, samples) float or int16) -> (batch, n_mels, 1 + samples // hop_length)``.
    Example::

        spec = LogMel(44100, 1024, 512, 128, "hamming", pad_mode="reflect", amplitude_scale=32768)(waves)
        # (batch, 128, 431) for 5 s
    """

    PAD_MODES = ("reflect", "constant")

    def __init__(self, sample_rate: int, n_fft: int = 1024, hop_length: int = 512, n_mels: int = 128,
                 window: str = "hamming", top_db: float = 80.0, pad_mode: str = "constant",
                 amplitude_scale: float = 1.0):
        super().__init__()
        windows = {"hamming": torch.hamming_window, "hann": torch.hann_window}
        if window not in windows:
            raise ValueError(f"LogMel: window (config field 'window') must be 'hamming' or 'hann', found {window!r}")
        if pad_mode not in self.PAD_MODES:
            raise ValueError(f"LogMel: pad_mode (config field 'stft_pad') must be 'reflect' or 'constant', found {pad_mode!r}")
        if not amplitude_scale > 0:
            raise ValueError(f"LogMel: amplitude_scale (config field 'amplitude_scale') must be > 0, found {amplitude_scale}")
        self.sample_rate, self.n_fft, self.hop_length = int(sample_rate), int(n_fft), int(hop_length)
        self.n_mels, self.window_name, self.top_db = int(n_mels), window, float(top_db)
        self.pad_mode, self.amplitude_scale = pad_mode, float(amplitude_scale)
        self.register_buffer("window", windows[window](self.n_fft, periodic=True), persistent=False)
        filters = torchaudio.functional.melscale_fbanks(self.n_fft // 2 + 1, 0.0, self.sample_rate / 2.0, self.n_mels,
                                                        self.sample_rate, norm="slaney", mel_scale="slaney")
        self.register_buffer("filters", filters.T.contiguous(), persistent=False)   # (n_mels, n_fft // 2 + 1)

    def frames(self, samples: int) -> int:
        return 1 + samples // self.hop_length

    def pad(self, waves: Tensor) -> None:
        """Fill the ``n_fft // 2`` samples at each end of ``waves`` (batch, samples) in place, as
        ``center=True`` with ``pad_mode`` pads the samples between them."""
        half = self.n_fft // 2
        if self.pad_mode == "constant":
            waves[:, :half] = 0
            waves[:, waves.shape[1] - half:] = 0
        else:   # numpy's "reflect": the edge sample itself is not repeated
            n = waves.shape[1] - 2 * half
            if n <= half:
                raise ValueError(f"LogMel: pad_mode='reflect' needs more than n_fft // 2 = {half} samples, found {n}")
            waves[:, :half] = waves[:, half + 1:2 * half + 1].flip(1)
            waves[:, half + n:] = waves[:, n - 1:n + half - 1].flip(1)

    def forward(self, waves: Tensor, padded: bool = False) -> Tensor:
        """``padded=True``: ``waves`` already carry the ``n_fft // 2`` samples at each end that
        ``center=True`` would add (see :meth:`pad`; saves a copy; the frames are the same)."""
        if waves.dim() != 2:
            raise ValueError(f"LogMel: waves must be (batch, samples), found shape {tuple(waves.shape)}")
        with torch.autocast(waves.device.type, enabled=False):
            stft = torch.stft(to_float(waves), self.n_fft, self.hop_length, window=self.window, center=not padded,
                              pad_mode=self.pad_mode, return_complex=True)
            parts = torch.view_as_real(stft).square_()                        # in place: cheaper than |z|^2
            power = parts[..., 0] + parts[..., 1]
            mel = torch.matmul(self.filters, power)                             # (batch, n_mels, frames)
            if self.amplitude_scale != 1.0:
                mel.mul_(self.amplitude_scale ** 2)                             # the power of the scaled wave
            db = mel.clamp_(min=1e-10).log10_().mul_(10.0)
            peak = db.flatten(1).amax(1)[:, None, None]
            return db.sub_(peak).clamp_(min=-self.top_db)

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, n_fft={self.n_fft}, hop_length={self.hop_length}, "
                f"n_mels={self.n_mels}, window={self.window_name!r}, top_db={self.top_db}, pad_mode={self.pad_mode!r}, "
                f"amplitude_scale={self.amplitude_scale:g}")


class FreqTimeMask(nn.Module):
    """Step 5: ``freq_masks`` frequency masks and ``time_masks`` time masks per clip.

    Each mask has a width uniform in {0, ..., max width} (clipped to the axis) and a start
    uniform over the positions that keep it inside the axis; masks are independent per
    clip and may overlap. Masked cells take ``fill``: ``"zero"`` (0 dB: the paper's and the
    released code's value, which on this scale is the loudest possible), ``"min"`` (the
    clip's minimum, i.e. its floor) or ``"mean"`` (the clip's mean), both computed before
    masking. Eval mode, or no masks: identity.

    ``forward(spec (batch, ..., mels, frames), keys (batch,) | None) -> same shape``. Example::

        masked = FreqTimeMask(2, 32, 1, 32, fill="zero")(spec, keys)
    """

    FREQ_DRAW = 1 << 16      # draw numbers 2^16 + 2k (width), 2^16 + 2k + 1 (start) for mask k
    TIME_DRAW = 2 << 16

    def __init__(self, freq_masks: int = 2, freq_mask_width: int = 32, time_masks: int = 1,
                 time_mask_width: int = 32, fill: str = "zero"):
        super().__init__()
        if fill not in ("zero", "min", "mean"):
            raise ValueError(f"FreqTimeMask: fill (config field 'mask_fill') must be 'zero', 'min' or 'mean', found {fill!r}")
        for name, value in (("freq_masks", freq_masks), ("freq_mask_width", freq_mask_width),
                            ("time_masks", time_masks), ("time_mask_width", time_mask_width)):
            if value < 0:
                raise ValueError(f"FreqTimeMask: {name} must be >= 0, found {value}")
        self.freq_masks, self.freq_mask_width = int(freq_masks), int(freq_mask_width)
        self.time_masks, self.time_mask_width = int(time_masks), int(time_mask_width)
        self.fill = fill

    @property
    def active(self) -> bool:
        return self.training and (self.freq_masks > 0 or self.time_masks > 0)

    @staticmethod
    def _spans(keys: Tensor, base: int, count: int, max_width: int, size: int) -> tuple[Tensor, Tensor]:
        if count == 0:
            empty = torch.zeros(keys.shape[0], 0, dtype=torch.int64, device=keys.device)
            return empty, empty
        bits = random_bits(keys, range(base, base + 2 * count))   # mask k: draw base + 2k (width), + 1 (start)
        widths = bits[:, 0::2] % (min(max_width, size) + 1)
        return bits[:, 1::2] % (size - widths + 1), widths

    def spans(self, keys: Tensor, mels: int, frames: int) -> dict[str, Tensor]:
        """Starts and widths of every mask, ``(batch, freq_masks)`` and ``(batch, time_masks)`` int64."""
        freq_start, freq_width = self._spans(keys, self.FREQ_DRAW, self.freq_masks, self.freq_mask_width, mels)
        time_start, time_width = self._spans(keys, self.TIME_DRAW, self.time_masks, self.time_mask_width, frames)
        return {"freq_start": freq_start, "freq_width": freq_width, "time_start": time_start, "time_width": time_width}

    def masks(self, keys: Tensor, mels: int, frames: int) -> tuple[Tensor, Tensor]:
        """Masked mel bands ``(batch, mels)`` and masked frames ``(batch, frames)``, bool."""
        s = self.spans(keys, mels, frames)

        def union(start: Tensor, width: Tensor, size: int) -> Tensor:
            index = torch.arange(size, device=start.device)[None, None, :]
            inside = (index >= start[:, :, None]) & (index < (start + width)[:, :, None])
            return inside.any(1)

        return union(s["freq_start"], s["freq_width"], mels), union(s["time_start"], s["time_width"], frames)

    def forward(self, spec: Tensor, keys: Tensor | None = None) -> Tensor:
        if not self.active:
            return spec
        if spec.dim() < 3:
            raise ValueError(f"FreqTimeMask: spec must be (batch, ..., mels, frames), found shape {tuple(spec.shape)}")
        batch, mels, frames = spec.shape[0], spec.shape[-2], spec.shape[-1]
        freq, time = self.masks(_keys_or_global(keys, batch, spec.device), mels, frames)
        shape = (batch,) + (1,) * (spec.dim() - 3)
        masked = freq.view(*shape, mels, 1) | time.view(*shape, 1, frames)
        if self.fill == "zero":
            return spec.masked_fill(masked, 0.0)
        flat = spec.flatten(1)
        value = flat.amin(1) if self.fill == "min" else flat.mean(1)
        return torch.where(masked, value.view(*shape, 1, 1), spec)

    def extra_repr(self) -> str:
        return (f"freq_masks={self.freq_masks}, freq_mask_width={self.freq_mask_width}, time_masks={self.time_masks}, "
                f"time_mask_width={self.time_mask_width}, fill={self.fill!r}")


class ToChannels(nn.Module):
    """Step 6: the log-mel as 1 channel, or copied to 3 for ImageNet backbones.

    ``forward(spec (batch, mels, frames)) -> (batch, channels, mels, frames)``; the copies are
    an ``expand`` (no memory), so write to the result only after ``.contiguous()``.
    """

    def __init__(self, channels: int = 3):
        super().__init__()
        if channels not in (1, 3):
            raise ValueError(f"ToChannels: channels (config field 'channels') must be 1 or 3, found {channels}")
        self.channels = int(channels)

    def forward(self, spec: Tensor) -> Tensor:
        return spec.unsqueeze(1).expand(-1, self.channels, -1, -1)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


def _add_noise(clips: Tensor, std: float, generator: torch.Generator | None) -> None:
    """Add white Gaussian noise of standard deviation ``std`` to ``clips`` (batch, samples) in place,
    drawn on the CPU (the same numbers on every device), then clip to [-1, 1] as a sound file would."""
    noise = torch.randn(clips.shape, generator=generator).mul_(std)
    clips.add_(noise.to(clips.device, non_blocking=True)).clamp_(-1.0, 1.0)


# ---------------------------------------------------------------------------------------
# The whole pipeline
# ---------------------------------------------------------------------------------------
class Pipeline(nn.Module):
    """Fig. 2 of the paper: waves to model inputs, batched, on the waves' device.

    Args:
        features: ``FeatureConfig`` (n_fft, hop_length, window, n_mels, top_db, stft_pad,
            amplitude_scale, channels).
        augment: ``AugmentConfig`` (trim, trim_db, scale, scale_max, random_crop, pad, masks).
        sample_rate: Hz of the waves (``DataConfig.sample_rate``).
        clip_samples: samples after pad/crop (``DataConfig.clip_samples``: 220500 ESC, 176400 US8K).
        seed: seeds ``self.generator``, which draws the clips' keys in train mode.
        pad: ``"edge"`` (the released code) or ``"zero"`` padding in PadCrop; default
            ``augment.pad`` (the configuration's default is ``"edge"``).

    ``forward(waves (batch, samples) int16|float, lengths (batch,) int64 | None, keys (batch,) int64 | None,
    *, noise_std=0.0, noise_generator=None, validate=True) -> float32 (batch, channels, n_mels, frames)``.
    Samples past a clip's length do not change the result (keep them finite: a WaveBank pads
    with zeros). In train mode, keys default to ``self.draw_keys(batch)``; in eval mode none
    are used. ``noise_std > 0`` adds white Gaussian noise of that standard deviation (in the
    [-1, 1] scale) to the padded/cropped clip, after trim and pad/crop, so that a noisy clip
    differs from the clean one by the noise alone (paper Sec. IV-E); it is drawn on the CPU
    from ``noise_generator`` (so every device adds the same noise). ``validate=False`` skips
    the check of ``lengths`` against the waves (a host read): for a WaveBank's batches.
    ``trace`` returns every stage's output. ``get_state()`` / ``set_state()`` save and restore
    the generator (put them in checkpoints: the module's ``state_dict`` is empty).
    """

    def __init__(self, features: FeatureConfig, augment: AugmentConfig, sample_rate: int, clip_samples: int,
                 seed: int = 0, pad: str | None = None):
        super().__init__()
        self.trim = SilenceTrim(augment.trim, augment.trim_db)
        self.scale = RandomScale(augment.scale_max if augment.scale else 1.0)
        self.pad_crop = PadCrop(clip_samples, augment.random_crop, pad or getattr(augment, "pad", "zero"))
        self.log_mel = LogMel(sample_rate, features.n_fft, features.hop_length, features.n_mels, features.window,
                              features.top_db, features.stft_pad, features.amplitude_scale)
        self.mask = FreqTimeMask(augment.freq_masks, augment.freq_mask_width, augment.time_masks,
                                 augment.time_mask_width, augment.mask_fill)
        self.to_channels = ToChannels(features.channels)
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(int(seed))

    @classmethod
    def from_config(cls, cfg: Config, seed: int | None = None, pad: str | None = None) -> "Pipeline":
        """The pipeline of a (resolved) configuration; the seed defaults to ``cfg.run.seed``."""
        cfg = cfg.resolved()
        return cls(cfg.features, cfg.augment, cfg.data.sample_rate, cfg.data.clip_samples,
                   cfg.run.seed if seed is None else seed, pad)

    @property
    def frames(self) -> int:
        """Frames of every output: ``1 + clip_samples // hop_length``."""
        return self.log_mel.frames(self.pad_crop.clip_samples)

    # -- randomness ------------------------------------------------------------------------
    def draw_keys(self, batch: int) -> Tensor:
        """``(batch,)`` int64 keys from ``self.generator`` (on the CPU, so every device agrees)."""
        return torch.randint(-(2 ** 63), 2 ** 63 - 1, (batch,), dtype=torch.int64, generator=self.generator)

    def get_state(self) -> Tensor:
        """The generator's state (a uint8 tensor) for a checkpoint."""
        return self.generator.get_state()

    def set_state(self, state: Tensor) -> None:
        self.generator.set_state(state.cpu())

    def _keys(self, waves: Tensor, keys: Tensor | None) -> Tensor | None:
        if not self.training:
            return None
        return _keys_or_global(self.draw_keys(waves.shape[0]) if keys is None else keys, waves.shape[0], waves.device)

    # -- forward ---------------------------------------------------------------------------
    def forward(self, waves: Tensor, lengths: Tensor | None = None, keys: Tensor | None = None, *,
                noise_std: float = 0.0, noise_generator: torch.Generator | None = None,
                validate: bool = True) -> Tensor:
        waves, lengths = _check_waves(waves, lengths, "Pipeline", validate)
        keys = self._keys(waves, keys)
        # trim -> scale -> pad/crop as one gather: output sample t of clip b is the trimmed,
        # scaled clip's sample t + shift, i.e. the input at start + (t + shift) / s.
        start, length = self.trim.bounds(waves, lengths)
        step, scaled_length = self.scale.factors(length, keys)
        shift = self.pad_crop.shifts(scaled_length, keys)
        # read n_fft // 2 samples more at each end, then fill them as the STFT's centring would: no copy
        half, clip = self.log_mel.n_fft // 2, self.pad_crop.clip_samples
        wave = _read(_padded_float(waves), start, length, step, shift - half, scaled_length, clip + 2 * half,
                     self.pad_crop.pad)
        if noise_std > 0:
            _add_noise(wave[:, half:half + clip], noise_std, noise_generator)
        self.log_mel.pad(wave)
        return self.to_channels(self.mask(self.log_mel(wave, padded=True), keys))

    @torch.no_grad()
    def trace(self, waves: Tensor, lengths: Tensor | None = None, keys: Tensor | None = None, *,
              noise_std: float = 0.0, noise_generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Every stage's output, in order, computed stage by stage (for Fig. 2).

        Keys: ``input`` (float32 full scale) + ``input_lengths``, ``trim`` + ``trim_lengths``, ``scale`` +
        ``scale_lengths`` (waves zero past each length), ``pad_crop`` (batch, clip_samples),
        ``log_mel`` and ``mask`` (batch, mels, frames), ``channels`` (the model input, equal
        to ``forward`` with the same keys).
        """
        waves, lengths = _check_waves(waves, lengths, "Pipeline.trace")
        keys = self._keys(waves, keys)
        out: dict[str, Tensor] = {"input": to_float(waves), "input_lengths": lengths}
        trimmed, lengths = self.trim(waves, lengths)
        out["trim"], out["trim_lengths"] = to_float(trimmed), lengths
        if self.scale.active:
            scaled, lengths = self.scale(trimmed, lengths, keys)
            out["scale"], out["scale_lengths"] = scaled, lengths
        else:
            scaled = trimmed
            out["scale"], out["scale_lengths"] = out["trim"], lengths
        out["pad_crop"] = self.pad_crop(scaled, lengths, keys)
        if noise_std > 0:
            _add_noise(out["pad_crop"], noise_std, noise_generator)
        out["log_mel"] = self.log_mel(out["pad_crop"])
        out["mask"] = self.mask(out["log_mel"], keys)
        out["channels"] = self.to_channels(out["mask"])
        return out
