"""The augmentation and feature pipeline (paper Sec. III-A, Fig. 2) against independent references:
librosa for the log-mel, np.trim_zeros / np.interp / plain loops for the wave steps and masks,
a pure-Python splitmix64 for the random draws."""
from __future__ import annotations

import dataclasses

import librosa
import numpy as np
import pytest
import torch

from soundclr.audio.pipeline import Pipeline
from soundclr.audio.rng import random_bits
from soundclr.audio.transforms import FreqTimeMask, LogMel, PadCrop, RandomScale, SilenceTrim, ToChannels
from soundclr.config import AugmentConfig, FeatureConfig, preset

SR = 44100
FEATURES = FeatureConfig()            # the paper's: 1024 / 512, Hamming, 128 mels, 80 dB, 3 channels
AUGMENT = AugmentConfig()             # the paper's: trim zeros, scale 1.25, random crop, 2 x 32 + 1 x 32 masks


def pipeline(clip_samples: int = 8192, seed: int = 0, pad: str = "zero", **augment) -> Pipeline:
    return Pipeline(FEATURES, dataclasses.replace(AUGMENT, **augment), SR, clip_samples, seed=seed, pad=pad)


def clips_with_margins(seed: int, count: int, body: int = 3000, margin: int = 700) -> tuple[torch.Tensor, torch.Tensor]:
    """int16 clips: zero margins of random width around a noise burst, zero-padded to a batch."""
    rng = np.random.default_rng(seed)
    rows, lengths = [], []
    for _ in range(count):
        m = rng.integers(1, body)
        burst = rng.normal(0, 3000, m).clip(-32768, 32767).round()
        burst[burst == 0] = 1                     # no zeros inside: the non-silent part is the burst
        x = np.concatenate([np.zeros(rng.integers(0, margin)), burst, np.zeros(rng.integers(0, margin))])
        rows.append(x.astype(np.int16))
        lengths.append(len(x))
    waves = np.zeros((count, max(lengths)), np.int16)
    for i, x in enumerate(rows):
        waves[i, :len(x)] = x
    return torch.from_numpy(waves), torch.tensor(lengths)


# --- random draws -----------------------------------------------------------------------
def splitmix64(z: int) -> int:
    m = (1 << 64) - 1
    z &= m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


def test_random_bits_are_splitmix64():
    keys = [0, 1, -1, 2 ** 63 - 1, -(2 ** 63), 123456789123456789]
    for draw in (0, 1, 70000):
        got = random_bits(torch.tensor(keys, dtype=torch.int64), draw).tolist()
        want = [splitmix64(splitmix64(k) + (draw + 1) * 0x9E3779B97F4A7C15) >> 1 for k in keys]
        assert got == want
    keys = torch.tensor(keys, dtype=torch.int64)
    several = random_bits(keys, range(5, 9))
    assert torch.equal(several, torch.stack([random_bits(keys, d) for d in range(5, 9)], 1))


# --- log-mel ----------------------------------------------------------------------------
def signals(samples: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    t = np.arange(samples) / SR
    tone = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3150.7 * t)
    noise = 0.1 * rng.standard_normal(samples)
    burst = np.exp(-t / 0.05) * rng.standard_normal(samples) * (t > 0.1)
    return np.stack([tone, noise, burst])


@pytest.mark.parametrize("window", ["hamming", "hann"])
@pytest.mark.parametrize("pad_mode", ["reflect", "constant"])
def test_log_mel_matches_librosa_on_every_frame(window, pad_mode):
    """Every frame, the first and last included: their centring pad is what pad_mode changes."""
    x = signals(SR // 2)
    got = LogMel(SR, 1024, 512, 128, window, 80.0, pad_mode=pad_mode, amplitude_scale=1.0)(torch.from_numpy(x).float()).numpy()
    for clip, ours in zip(x, got):
        power = librosa.feature.melspectrogram(y=clip, sr=SR, n_fft=1024, hop_length=512, window=window, center=True,
                                               pad_mode=pad_mode, power=2.0, n_mels=128, htk=False, norm="slaney")
        ref = librosa.power_to_db(power, ref=np.max, amin=1e-10, top_db=80.0)
        assert ours.shape == ref.shape
        above = ref > -80.0
        assert above.mean() > 0.3
        assert np.abs(ours - ref).max() < 0.05                  # every cell of every frame, the floor included
        assert ours.max() == 0.0 and ours.min() >= -80.0
    tone = got[0]
    for frame in (0, -1):   # the edge frames are checked (the tone fills them), and the two pads do differ there
        other = LogMel(SR, 1024, 512, 128, window, 80.0, pad_mode="constant" if pad_mode == "reflect" else "reflect",
                       amplitude_scale=1.0)
        assert np.abs(other(torch.from_numpy(x[:1]).float()).numpy()[0][:, frame] - tone[:, frame]).max() > 1.0


def test_amplitude_scale_is_librosa_on_scaled_waves():
    """The released code takes the mel power of waves times 32768: the amin floor then sits 2^30 lower,
    so the digital silence of a quiet clip is at the -80 dB floor, not above it."""
    t = np.arange(SR) / SR
    quiet = 1e-4 * np.sin(2 * np.pi * 440 * t) * (np.abs(t - 0.5) > 0.3)      # silence in the middle
    for scale in (1.0, 32768.0):
        ours = LogMel(SR, 1024, 512, 128, "hann", 80.0, pad_mode="reflect", amplitude_scale=scale)(
            torch.from_numpy(quiet[None]).float())[0].numpy()
        power = librosa.feature.melspectrogram(y=quiet * scale, sr=SR, n_fft=1024, hop_length=512, window="hann",
                                               center=True, pad_mode="reflect", power=2.0, n_mels=128)
        ref = librosa.power_to_db(power, ref=np.max, amin=1e-10, top_db=80.0)
        assert np.abs(ours - ref).max() < 0.05, scale
        middle = ours[:, 40]                                   # a frame of pure digital silence
        if scale == 1.0:
            assert middle.min() > -70.0                        # above the floor: amin relative to a quiet peak
        else:
            assert (middle == -80.0).all()


def test_log_mel_reads_int16_as_full_scale():
    x = torch.from_numpy((signals(8192) * 8000).round().astype(np.int16))
    log_mel = LogMel(SR)
    assert torch.equal(log_mel(x), log_mel(x.float() / 32768))


@pytest.mark.parametrize("clip_samples, frames", [(220500, 431), (176400, 345)])
def test_frame_counts(clip_samples, frames):
    p = pipeline(clip_samples).eval()
    assert p.frames == frames
    out = p(torch.zeros(1, 100, dtype=torch.int16) + 5, torch.tensor([100]))
    assert out.shape == (1, 3, 128, frames)


# --- silence trim ------------------------------------------------------------------------
def test_trim_zeros_strips_exactly_the_zero_margins():
    waves, lengths = clips_with_margins(2, 24)
    waves[3, 100:200] = 0                        # inner zeros stay
    waves[5, lengths[5]:] = 999                  # past the length: ignored
    trimmed, new_lengths = SilenceTrim("zeros")(waves, lengths)
    for i in range(len(waves)):
        want = np.trim_zeros(waves[i, :lengths[i]].numpy())
        assert new_lengths[i] == len(want)
        assert np.array_equal(trimmed[i, :len(want)].numpy(), want)
        assert not trimmed[i, len(want):].any()
    assert trimmed.dtype == torch.int16


def test_trim_zeros_on_sparse_clips_of_any_length():
    # few non-zero samples at random places, lengths not multiples of anything, non-zero data past the length
    rng = np.random.default_rng(11)
    trim = SilenceTrim("zeros")
    for _ in range(60):
        n = int(rng.integers(1, 1300))
        waves = torch.from_numpy((rng.random((6, n)) < rng.random() * 0.02).astype(np.int16) * -3)
        lengths = torch.from_numpy(rng.integers(0, n + 1, 6))
        start, length = trim.bounds(waves, lengths)
        for i in range(6):
            nonzero = np.flatnonzero(waves[i, :lengths[i]].numpy())
            want = (nonzero[0], nonzero[-1] - nonzero[0] + 1) if len(nonzero) else (0, lengths[i].item())
            assert (start[i].item(), length[i].item()) == want


def test_trim_threshold_strips_quiet_margins():
    rng = np.random.default_rng(3)
    quiet = 10 ** (-70 / 20)                     # 70 dB under the peak: below a 60 dB threshold
    x = np.concatenate([quiet * rng.uniform(-1, 1, 2000), rng.uniform(0.1, 1, 3000) * rng.choice([-1, 1], 3000),
                        quiet * rng.uniform(-1, 1, 1500)]).astype(np.float32)
    waves = torch.from_numpy(np.stack([x, np.roll(x, 700)]))
    start, length = SilenceTrim("threshold", 60.0).bounds(waves, torch.tensor([len(x), len(x)]))
    assert start.tolist() == [2000, 2700] and length.tolist() == [3000, 3000]
    for i in range(2):                           # numpy reference of the rule
        a = np.abs(waves[i].numpy())
        kept = np.flatnonzero(a >= a.max() * 10 ** (-60 / 20))
        assert (start[i], length[i]) == (kept[0], kept[-1] - kept[0] + 1)
    assert SilenceTrim("none").bounds(waves, torch.tensor([6500, 10]))[1].tolist() == [6500, 10]


@pytest.mark.parametrize("trim", ["zeros", "threshold", "none"])
def test_silent_and_tiny_clips_give_finite_output(trim):
    waves = torch.zeros(5, 3000, dtype=torch.int16)
    waves[2, :3000] = 1                          # a constant at the int16 floor
    waves[3, 0] = 7                              # one sample
    lengths = torch.tensor([3000, 0, 3000, 1, 2])
    p = pipeline(4096, trim=trim, pad="edge" if trim == "none" else "zero")
    for mode in (p.train(), p.eval()):
        out = mode(waves, lengths, keys=torch.arange(5))
        assert torch.isfinite(out).all() and out.max() <= 0 and out.min() >= -80
    start, length = SilenceTrim(trim).bounds(waves, lengths)
    assert length[0] == 3000                     # all zeros: kept whole


# --- random scale ------------------------------------------------------------------------
def test_scale_changes_the_non_silent_length_by_s():
    waves, lengths = clips_with_margins(4, 64, body=2000)
    keys = torch.arange(64) * 1000 + 17
    trimmed, body = SilenceTrim("zeros")(waves, lengths)
    scale = RandomScale(1.25)
    scaled, new_lengths = scale(trimmed, body, keys)
    step, _ = scale.factors(body, keys)
    s = 2.0 ** 32 / step.double()
    assert (s >= 1 / 1.25).all() and (s <= 1.25).all() and s.min() < 0.85 and s.max() > 1.18
    assert ((new_lengths.double() - body.double() * s).abs() <= 0.5 + 1e-9).all()
    for i in range(64):
        n = int(new_lengths[i])
        got = scaled[i].numpy()
        assert np.count_nonzero(got) == n        # the scaled clip is non-silent over exactly its new length
        clip = trimmed[i, :body[i]].numpy() / 32768
        want = np.interp(np.arange(n) * step[i].item() / 2 ** 32, np.arange(len(clip)), clip)
        np.testing.assert_allclose(got[:n], want, atol=1e-6)


def test_scale_factor_is_max_scale_to_a_uniform_power():
    lengths = torch.full((4000,), 10000)
    step, _ = RandomScale(1.25).factors(lengths, torch.arange(4000))
    exponent = (np.log(2.0 ** 32 / step.double().numpy()) / np.log(1.25))
    assert abs(exponent.mean()) < 0.03 and abs(exponent.std() - 1 / np.sqrt(3)) < 0.02
    assert RandomScale(1.25).eval()(torch.ones(2, 50), torch.tensor([50, 20]))[1].tolist() == [50, 20]


# --- pad / crop --------------------------------------------------------------------------
def ramps(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample holds 1 + its index / 2^15 exactly, so an output sample names its source."""
    waves = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        waves[i, :n] = 1 + torch.arange(n) / 2 ** 15
    return waves, torch.tensor(lengths)


def source_index(out: torch.Tensor) -> torch.Tensor:
    return torch.where(out != 0, (out - 1) * 2 ** 15, torch.full_like(out, -1)).round().long()


def test_pad_crop_eval_is_centred():
    waves, lengths = ramps([5000, 1000, 1001, 3000])
    crop = PadCrop(3000, pad="zero").eval()
    out = source_index(crop(waves, lengths))
    assert out[0].tolist() == list(range(1000, 4000))
    assert out[1].tolist() == [-1] * 1000 + list(range(1000)) + [-1] * 1000
    assert out[2].tolist() == [-1] * 999 + list(range(1001)) + [-1] * 1000
    assert out[3].tolist() == list(range(3000))
    edge = PadCrop(3000, pad="edge").eval()(waves, lengths)
    assert (edge[1, :1000] == waves[1, 0]).all() and (edge[1, 2000:] == waves[1, 999]).all()


def test_pad_crop_train_offsets_cover_their_range():
    n = 64
    waves, lengths = ramps([4000] * (n // 2) + [500] * (n // 2))
    crop = PadCrop(1000, pad="zero").train()
    out = source_index(crop(waves, lengths, torch.arange(n)))
    offsets = set()
    for i in range(n):
        row = out[i]
        kept = row[row >= 0]
        assert torch.equal(kept, torch.arange(int(kept[0]), int(kept[0]) + len(kept)))   # contiguous
        if i < n // 2:                         # crop: offset in [0, 4000 - 1000]
            assert len(kept) == 1000 and 0 <= kept[0] <= 3000
            offsets.add(int(kept[0]))
        else:                                  # pad: the whole clip at an offset in [0, 1000 - 500]
            p = int((row >= 0).nonzero()[0])
            assert len(kept) == 500 and kept[0] == 0 and 0 <= p <= 500
            offsets.add(-p)
    assert len(offsets) > n // 2
    fixed = PadCrop(1000, random_crop=False, pad="zero").train()(waves, lengths, torch.arange(n))
    assert torch.equal(fixed, PadCrop(1000, pad="zero").eval()(waves, lengths))


# --- masks ------------------------------------------------------------------------------
@pytest.mark.parametrize("fill", ["zero", "min", "mean"])
def test_masks_have_bounded_widths_and_hold_the_fill(fill):
    batch, mels, frames = 200, 40, 100
    spec = -1 - 70 * torch.rand(batch, mels, frames)
    mask = FreqTimeMask(2, 10, 3, 20, fill=fill).train()
    keys = torch.arange(batch) + 99
    out = mask(spec, keys)
    spans = mask.spans(keys, mels, frames)
    assert spans["freq_width"].shape == (batch, 2) and spans["time_width"].shape == (batch, 3)
    assert spans["freq_width"].min() == 0 and spans["freq_width"].max() == 10
    assert spans["time_width"].min() == 0 and spans["time_width"].max() == 20
    assert (spans["freq_start"] + spans["freq_width"] <= mels).all()
    assert (spans["time_start"] + spans["time_width"] <= frames).all()
    value = {"zero": torch.zeros(batch), "min": spec.amin((1, 2)), "mean": spec.mean((1, 2))}[fill]
    for b in range(batch):                      # brute force: the union of the drawn bands and frames
        masked = torch.zeros(mels, frames, dtype=torch.bool)
        for k in range(2):
            f0, w = spans["freq_start"][b, k], spans["freq_width"][b, k]
            masked[f0:f0 + w, :] = True
        for k in range(3):
            t0, w = spans["time_start"][b, k], spans["time_width"][b, k]
            masked[:, t0:t0 + w] = True
        assert torch.equal(out[b][~masked], spec[b][~masked])
        assert torch.allclose(out[b][masked], value[b].expand(int(masked.sum())))
    assert not torch.equal(out, spec)


def test_masks_off_mask_nothing():
    spec = torch.rand(4, 40, 100)
    assert torch.equal(FreqTimeMask(0, 32, 0, 32).train()(spec, torch.arange(4)), spec)
    assert torch.equal(FreqTimeMask(2, 32, 1, 32).eval()(spec, torch.arange(4)), spec)
    assert torch.equal(FreqTimeMask(2, 0, 1, 0).train()(spec, torch.arange(4)), spec)


def test_to_channels():
    spec = torch.rand(2, 5, 7)
    assert torch.equal(ToChannels(3)(spec), spec[:, None].repeat(1, 3, 1, 1))
    assert ToChannels(1)(spec).shape == (2, 1, 5, 7)


# --- the whole pipeline -------------------------------------------------------------------
@pytest.mark.parametrize("settings", [dict(), dict(trim="threshold", pad="edge", mask_fill="mean"),
                                      dict(trim="none", scale=False, mask_fill="min")])
def test_trace_ends_in_forward(settings):
    pad = settings.pop("pad", "zero")
    waves, lengths = clips_with_margins(5, 6, body=9000)
    p = pipeline(8192, pad=pad, **settings)
    keys = torch.arange(6) * 3
    trace = p.trace(waves, lengths, keys)
    assert list(trace) == ["input", "input_lengths", "trim", "trim_lengths", "scale", "scale_lengths", "pad_crop",
                           "log_mel", "mask", "channels"]
    assert torch.equal(trace["channels"], p(waves, lengths, keys))
    p.eval()
    assert torch.equal(p.trace(waves, lengths)["channels"], p(waves, lengths))


def test_eval_is_deterministic_and_draws_nothing():
    waves, lengths = clips_with_margins(6, 4, body=9000)
    p = pipeline(8192).eval()
    state = p.get_state().clone()
    first = p(waves, lengths)
    assert torch.equal(first, p(waves, lengths))
    assert torch.equal(p.get_state(), state)
    assert first.amax() <= 0 and (first.flatten(1).amax(1) == 0).all()          # no 0 dB masks in eval


def test_noise_is_added_after_trim_and_pad_crop():
    """Sec. IV-E: a noisy test clip differs from the clean one by the noise alone (same trim, same window)."""
    waves, lengths = clips_with_margins(11, 4, body=6000)
    p = pipeline(8192).eval()
    clean = p.trace(waves, lengths)
    noisy = p.trace(waves, lengths, noise_std=1e-3, noise_generator=torch.Generator().manual_seed(3))
    expected = torch.randn(4, 8192, generator=torch.Generator().manual_seed(3)) * 1e-3
    assert torch.equal(noisy["trim_lengths"], clean["trim_lengths"])
    torch.testing.assert_close(noisy["pad_crop"], (clean["pad_crop"] + expected).clamp(-1, 1), atol=1e-7, rtol=0)
    # forward adds the very same noise, and std 0 is exactly the clean path
    same = p(waves, lengths, noise_std=1e-3, noise_generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(same, noisy["channels"], atol=1e-4, rtol=0)
    assert torch.equal(p(waves, lengths, noise_std=0.0), p(waves, lengths))


def test_switched_off_augmentation_equals_eval():
    waves, lengths = clips_with_margins(7, 4, body=9000)
    off = pipeline(8192, scale=False, random_crop=False, freq_masks=0, time_masks=0).train()
    assert torch.equal(off(waves, lengths), pipeline(8192).eval()(waves, lengths))


def test_batch_equals_clips_one_by_one():
    waves, lengths = clips_with_margins(8, 5, body=9000)
    p = pipeline(8192, trim="threshold").train()
    keys = torch.tensor([5, -3, 2 ** 40, 7, 0])
    batch = p.trace(waves, lengths, keys)
    for i in range(5):
        alone = p.trace(waves[i:i + 1, :lengths[i]], lengths[i:i + 1], keys[i:i + 1])
        assert torch.equal(alone["pad_crop"], batch["pad_crop"][i:i + 1])
        torch.testing.assert_close(alone["channels"], batch["channels"][i:i + 1], atol=1e-3, rtol=0)


def test_seed_decides_the_augmentation():
    waves, lengths = clips_with_margins(9, 4, body=9000)
    a, b, c = pipeline(8192, seed=1), pipeline(8192, seed=1), pipeline(8192, seed=2)
    first = a(waves, lengths)
    assert torch.equal(first, b(waves, lengths))
    assert not torch.equal(first, c(waves, lengths))
    state = a.get_state()
    second = a(waves, lengths)
    assert not torch.equal(first, second)       # a new batch, new draws
    a.set_state(state)
    assert torch.equal(a(waves, lengths), second)


def test_from_config_and_errors():
    p = Pipeline.from_config(preset("paper", dataset="us8k"))
    assert p.pad_crop.clip_samples == 176400 and p.frames == 345
    with pytest.raises(ValueError, match="batch, samples"):
        p(torch.zeros(100))
    with pytest.raises(ValueError, match="lengths"):
        p(torch.zeros(2, 100), torch.tensor([100, 101]))
    with pytest.raises(ValueError, match="trim"):
        SilenceTrim("silence")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_and_cuda_agree():
    waves, lengths = clips_with_margins(10, 6, body=9000)
    p = pipeline(8192)
    keys = torch.arange(6) + 1000
    cpu = p.trace(waves, lengths, keys)
    gpu = p.to("cuda").trace(waves.cuda(), lengths.cuda(), keys.cuda())
    assert torch.equal(cpu["pad_crop"], gpu["pad_crop"].cpu())          # wave steps: integer positions, exact
    torch.testing.assert_close(cpu["channels"], gpu["channels"].cpu(), atol=0.05, rtol=0)
    p.eval()
    torch.testing.assert_close(p(waves.cuda(), lengths.cuda()).cpu(), p.cpu()(waves, lengths), atol=0.05, rtol=0)


def test_each_stage_defaults_to_the_paper_preset():
    """A stage built alone computes what the paper preset's pipeline computes: its defaults are the preset's."""
    import inspect
    cfg = preset("paper").resolved()
    f, a = cfg.features, cfg.augment
    expected = {
        SilenceTrim: {"rule": a.trim, "trim_db": a.trim_db},
        RandomScale: {"max_scale": a.scale_max},
        PadCrop: {"random_crop": a.random_crop, "pad": a.pad},
        LogMel: {"n_fft": f.n_fft, "hop_length": f.hop_length, "n_mels": f.n_mels, "window": f.window, "top_db": f.top_db,
                 "pad_mode": f.stft_pad, "amplitude_scale": f.amplitude_scale},
        FreqTimeMask: {"freq_masks": a.freq_masks, "freq_mask_width": a.freq_mask_width, "time_masks": a.time_masks,
                       "time_mask_width": a.time_mask_width, "fill": a.mask_fill},
        ToChannels: {"channels": f.channels},
    }
    for cls, values in expected.items():
        defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()}
        assert {k: defaults[k] for k in values} == values, cls.__name__
