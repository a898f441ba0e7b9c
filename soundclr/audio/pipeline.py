"""The augmentation and feature pipeline of the paper (Sec. III-A, Fig. 2), batched on any device.

::

    waves (batch, samples) int16 or float, lengths (batch,)
      -> SilenceTrim   strip silent beginnings and ends             (batch, samples') + lengths
      -> RandomScale   resample by s = scale_max^U(-1, 1)           (batch, samples'') + lengths
      -> PadCrop       pad or crop to clip_samples                  (batch, clip_samples)
      -> LogMel        log-mel spectrogram, dB below the clip's max (batch, mels, frames)
      -> FreqTimeMask  f frequency masks and t time masks           (batch, mels, frames)
      -> ToChannels    copy to 1 or 3 channels                      (batch, channels, mels, frames)

:class:`Pipeline` composes the stages of :mod:`soundclr.audio.transforms` through their public
methods (``bounds``, ``factors``, ``shifts``, ``pad``): its ``forward`` fuses the three wave steps
into one gather (:func:`soundclr.audio.functional.read_segment`; trim, scale and pad/crop only move
and interpolate samples, so output sample ``t`` of clip ``b`` reads the input at one computable
position); ``trace`` runs the stages one by one, returns every intermediate, and gives the same output.

Randomness: every random choice of a clip is a function of that clip's int64 key and a fixed draw
number (:mod:`soundclr.audio.rng`), so a batch gives what its clips give one by one, and CPU and
CUDA draw the same numbers; each wave sample is then a fixed sequence of single float32 operations,
so CPU and CUDA give the same waves (the CUDA test checks it bit for bit; the spectrograms agree to
FFT rounding). Keys not given are drawn from ``Pipeline.generator`` (one draw per training batch).

Modes: ``train()`` augments as configured; ``eval()`` is deterministic: the silence trim still
applies (the model was trained on trimmed clips), no scaling, centred pad/crop, no masks.

Example::

    cfg = soundclr.preset("paper", dataset="esc50").resolved()
    pipeline = Pipeline.from_config(cfg).to("cuda")
    x = pipeline(bank.waves[idx].cuda(), bank.lengths[idx].cuda())   # (batch, 3, 128, 431)
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import AugmentConfig, Config, FeatureConfig
from .functional import add_noise, check_waves, padded_float, read_segment
from .io import to_float
from .rng import keys_or_global
from .transforms import FreqTimeMask, LogMel, PadCrop, RandomScale, SilenceTrim, ToChannels


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
        return keys_or_global(self.draw_keys(waves.shape[0]) if keys is None else keys, waves.shape[0], waves.device)

    # -- forward ---------------------------------------------------------------------------
    def forward(self, waves: Tensor, lengths: Tensor | None = None, keys: Tensor | None = None, *,
                noise_std: float = 0.0, noise_generator: torch.Generator | None = None,
                validate: bool = True) -> Tensor:
        waves, lengths = check_waves(waves, lengths, "Pipeline", validate)
        keys = self._keys(waves, keys)
        # trim -> scale -> pad/crop as one gather: output sample t of clip b is the trimmed,
        # scaled clip's sample t + shift, i.e. the input at start + (t + shift) / s.
        start, length = self.trim.bounds(waves, lengths)
        step, scaled_length = self.scale.factors(length, keys)
        shift = self.pad_crop.shifts(scaled_length, keys)
        # read n_fft // 2 samples more at each end, then fill them as the STFT's centring would: no copy
        half, clip = self.log_mel.n_fft // 2, self.pad_crop.clip_samples
        wave = read_segment(padded_float(waves), start, length, step, shift - half, scaled_length, clip + 2 * half,
                     self.pad_crop.pad)
        if noise_std > 0:
            add_noise(wave[:, half:half + clip], noise_std, noise_generator)
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
        waves, lengths = check_waves(waves, lengths, "Pipeline.trace")
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
            add_noise(out["pad_crop"], noise_std, noise_generator)
        out["log_mel"] = self.log_mel(out["pad_crop"])
        out["mask"] = self.mask(out["log_mel"], keys)
        out["channels"] = self.to_channels(out["mask"])
        return out
