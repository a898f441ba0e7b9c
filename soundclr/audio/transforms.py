"""The six steps of the paper's Fig. 2, one ``nn.Module`` each, usable alone.

Each Module's defaults are the paper preset's values (``soundclr.config``; a test checks them). Shapes are in each
class's docstring; :class:`soundclr.audio.pipeline.Pipeline` composes them.
"""
from __future__ import annotations

import torch
import torchaudio
from torch import Tensor, nn

from ..config import MASK_FILLS, TRIM_RULES
from .functional import (
    BLOCK,
    check_waves,
    first_last,
    gather_clips,
    padded_float,
    read_segment,
)
from .io import to_float
from .rng import keys_or_global, randint, random_bits, shr


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
        if rule not in TRIM_RULES:
            raise ValueError(f"SilenceTrim: rule (config field 'trim') must be 'zeros', 'threshold' or 'none', found {rule!r}")
        self.rule, self.trim_db = rule, float(trim_db)

    def bounds(self, waves: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Per-clip ``start`` and ``length`` of the kept segment, ``(batch,)`` int64 each."""
        batch, n = waves.shape
        if self.rule == "none":
            return torch.zeros_like(lengths), lengths
        # keep[b, i]: sample i is not silence; padded with False to whole blocks
        keep = waves.new_empty(batch, -(-n // BLOCK) * BLOCK, dtype=torch.bool)
        keep[:, n:] = False
        if self.rule == "zeros":
            torch.ne(waves, 0, out=keep[:, :n])
        else:
            x = waves.masked_fill(torch.arange(n, device=waves.device) >= lengths[:, None], 0)
            peak = torch.maximum(x.amax(1).float(), -x.amin(1).float())     # no int16 abs overflow at -32768
            threshold = (peak * 10.0 ** (-self.trim_db / 20.0)).clamp(min=torch.finfo(torch.float32).tiny)[:, None]
            torch.logical_or(x >= threshold, x <= -threshold, out=keep[:, :n])
        first, last, found = first_last(keep, lengths)
        # nothing to keep (all zeros, all past the length): keep the clip whole
        return torch.where(found, first, 0), torch.where(found, last - first + 1, lengths)

    def forward(self, waves: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        waves, lengths = check_waves(waves, lengths, "SilenceTrim")
        start, length = self.bounds(waves, lengths)
        return gather_clips(waves, start, length), length

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
        step = self.steps.to(lengths.device)[shr(random_bits(keys, self.DRAW), 63 - 16)]
        new_length = (lengths * (1 << 33) + step) // (2 * step)                # round(lengths * 2^32 / step)
        return step, torch.where(lengths > 0, new_length.clamp(min=1), 0)

    def forward(self, waves: Tensor, lengths: Tensor | None = None, keys: Tensor | None = None) -> tuple[Tensor, Tensor]:
        waves, lengths = check_waves(waves, lengths, "RandomScale")
        if not self.active:
            return to_float(waves), lengths
        step, new_length = self.factors(lengths, keys_or_global(keys, waves.shape[0], waves.device))
        zero = torch.zeros_like(lengths)
        out_samples = max(int(new_length.max()), 1) if new_length.numel() else 1
        return read_segment(padded_float(waves), zero, lengths, step, zero, new_length, out_samples, "zero"), new_length

    def extra_repr(self) -> str:
        return f"max_scale={self.max_scale}"


class PadCrop(nn.Module):
    """Step 3: pad or crop every clip to ``clip_samples``.

    A clip longer than ``clip_samples`` is cropped, a shorter one padded. In train mode
    with ``random_crop`` the offset is uniform over all positions that keep the window
    inside the clip (crop) or the clip inside the window (pad); in eval mode, or with
    ``random_crop=False``, the clip is centred (deterministic). ``pad="edge"`` repeats the
    end samples (the released code's, and the paper preset's), ``pad="zero"`` pads with silence.

    ``forward(waves (batch, samples), lengths (batch,), keys (batch,) | None)
    -> float32 waves (batch, clip_samples)``. Example::

        fixed = PadCrop(220500)(waves, lengths, keys)
    """

    DRAW = 2

    def __init__(self, clip_samples: int, random_crop: bool = True, pad: str = "edge"):
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
        waves, lengths = check_waves(waves, lengths, "PadCrop")
        if self.training and self.random_crop:
            keys = keys_or_global(keys, waves.shape[0], waves.device)
        zero = torch.zeros_like(lengths)
        return read_segment(padded_float(waves), zero, lengths, None, self.shifts(lengths, keys), lengths,
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
                 window: str = "hamming", top_db: float = 80.0, pad_mode: str = "reflect",
                 amplitude_scale: float = 32768.0):
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
        if fill not in MASK_FILLS:
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
        freq, time = self.masks(keys_or_global(keys, batch, spec.device), mels, frames)
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
