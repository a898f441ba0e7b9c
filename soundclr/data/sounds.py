"""The ten classes of the embedded synthetic dataset: how each one sounds (index = ``target``).

====  ==================  ====================================================
  0   ``dog``             1-5 barks: short harmonic bursts (f0 300-700 Hz)
  1   ``siren``           a tone swept in pitch with 3 harmonics: "wail" or "whoop"
  2   ``clock_tick``      a click train at 2-7 clicks/s (tick-tock)
  3   ``engine``          a low harmonic stack (f0 25-70 Hz) with firing rhythm and noise
  4   ``woodpecker``      the same clicks as ``clock_tick``, faster: 5-12 clicks/s
  5   ``wind``            low-passed noise swelling in slow gusts
  6   ``rain``            broadband hiss plus 10-150 random drops a second
  7   ``chirping_birds``  bursts of upward chirps (1-3.5 kHz, rising)
  8   ``crackling_fire``  sparse clusters of sharp impulses over a rumble and a hiss
  9   ``doorbell``        a two-tone chime, bell-like partials, rung once or twice
====  ==================  ====================================================

Some pairs are made to be confused (``CONFUSABLE_PAIRS``): the two click trains differ only in
their overlapping rates; a whooping siren is a train of upward sweeps like a bird's slow chirps;
sparse rain and a hissing fire are both clicks in noise; a noisy, revving engine is swelling
low-passed noise like wind. So a small model learns the set well above chance without reaching
100 %. Every clip varies in loudness (peak -30 to -3 dBFS), pitch, timing and onset, carries a
low background noise, a fifth are shorter than ``CLIP_SECONDS`` (1.5-2.5 s), and many have silent
margins of **exactly zero** samples (the pipeline's ``trim="zeros"`` strips exactly those).
"""
from __future__ import annotations

import numpy as np
import scipy.fft

SAMPLE_RATE = 16000          # rate of the written files


CLIP_SECONDS = 2.5           # matches CLIP_SECONDS["synthetic"] in soundclr/config.py


CLASSES: list[str] = [
    "dog", "siren", "clock_tick", "engine", "woodpecker",
    "wind", "rain", "chirping_birds", "crackling_fire", "doorbell",
]


# Pairs of targets built to be confused with each other (see the module docstring).
CONFUSABLE_PAIRS: list[tuple[int, int]] = [(2, 4), (1, 7), (6, 8), (3, 5)]


_SR = SAMPLE_RATE


def _noise(rng: np.random.Generator, n: int, lo: float, hi: float, tilt_db: float = 0.0) -> np.ndarray:
    """Gaussian noise band-limited to [lo, hi] Hz with a spectral tilt in dB/octave, unit RMS.

    Shaped in the frequency domain with soft (logistic in log-frequency) band
    edges, so the band has no ringing. Returns ``(n,)``.
    """
    size = scipy.fft.next_fast_len(n, real=True)   # a prime length would make the FFT 10x slower
    spec = rng.standard_normal(size // 2 + 1) + 1j * rng.standard_normal(size // 2 + 1)
    f = np.maximum(np.fft.rfftfreq(size, 1.0 / _SR), 1.0)
    logf = np.log2(f)
    gain = 1.0 / (1.0 + np.exp(-(logf - np.log2(lo)) * 8.0))
    gain = gain / (1.0 + np.exp((logf - np.log2(hi)) * 8.0))
    gain = gain * 10.0 ** (tilt_db * (logf - np.log2(1000.0)) / 20.0)
    x = scipy.fft.irfft(spec * gain, size)[:n]
    return x / (np.sqrt(np.mean(x ** 2)) + 1e-12)


def _smooth_random(rng: np.random.Generator, n: int, rate_hz: float) -> np.ndarray:
    """A slowly varying random curve in [0, 1]: random knots every 1/rate_hz s, cosine-interpolated. ``(n,)``."""
    step = max(int(_SR / rate_hz), 1)
    knots = rng.uniform(0.0, 1.0, n // step + 2)
    pos = np.arange(n) / step
    i = pos.astype(np.int64)
    w = 0.5 - 0.5 * np.cos(np.pi * (pos - i))
    return knots[i] * (1.0 - w) + knots[i + 1] * w


def _overlay(n: int, onsets: np.ndarray, grains: np.ndarray) -> np.ndarray:
    """Sum grains ``(events, grain_samples)`` into a signal ``(n,)``, grain k starting at sample ``onsets[k]``.

    One scatter-add (bincount) instead of a loop over events; grains running
    past the end are cut.
    """
    if len(onsets) == 0:
        return np.zeros(n)
    idx = onsets[:, None] + np.arange(grains.shape[1])[None, :]
    keep = idx < n
    return np.bincount(idx[keep], weights=grains[keep], minlength=n)[:n]


def _phase(freq: np.ndarray) -> np.ndarray:
    """Instantaneous phase (radians) of a tone whose frequency in Hz varies along the last axis."""
    return 2.0 * np.pi * np.cumsum(freq, axis=-1) / _SR


def _clicks(rng: np.random.Generator, n: int, rate_lo: float, rate_hi: float) -> np.ndarray:
    """A periodic click train (clock_tick and woodpecker share it: only the rate range differs). ``(n,)``."""
    rate = rng.uniform(rate_lo, rate_hi)
    jitter = rng.uniform(0.0, 0.05)
    periods = (1.0 / rate) * (1.0 + jitter * rng.standard_normal(int(n / _SR * rate) + 2))
    times = rng.uniform(0.0, 1.0 / rate) + np.concatenate([[0.0], np.cumsum(periods)])
    onsets = (times * _SR).astype(np.int64)
    onsets = onsets[onsets < n]
    k = len(onsets)
    m = int(0.04 * _SR)
    tau = np.arange(m)[None, :] / _SR
    # Tick-tock: every other click a little lower and softer.
    tock = (np.arange(k) % 2 == 1)[:, None]
    shift = np.where(tock, rng.uniform(0.8, 1.0), 1.0)
    level = np.where(tock, rng.uniform(0.5, 1.0), 1.0) * rng.uniform(0.85, 1.0, (k, 1))
    modes = rng.uniform(1500.0, 4500.0, 3)
    decays = rng.uniform(0.003, 0.010, 3)
    ring = sum(np.exp(-tau / d) * np.sin(2 * np.pi * f * shift * tau) * a
               for f, d, a in zip(modes, decays, (1.0, 0.6, 0.35)))
    transient = rng.standard_normal((k, m)) * np.exp(-tau / 0.0008) * 0.8
    return _overlay(n, onsets, level * (ring + transient))


def _dog(rng, n):
    k = rng.integers(1, 6)
    durs = rng.uniform(0.10, 0.30, k)
    gaps = rng.uniform(0.12, 0.60, k)
    starts = rng.uniform(0.0, 0.3) * n / _SR + np.concatenate([[0.0], np.cumsum(durs + gaps)[:-1]])
    onsets = (starts * _SR).astype(np.int64)
    m = int(durs.max() * _SR)
    tau = np.arange(m)[None, :] / _SR
    u = tau / durs[:, None]
    f0 = rng.uniform(300.0, 700.0, (k, 1)) * (1.0 + 0.15 * np.sin(np.pi * np.minimum(u, 1.0)) - 0.25 * u)
    phase = _phase(f0)
    formant = rng.uniform(700.0, 1600.0)
    h = np.arange(1, 11)[None, None, :]
    fh = f0[..., None] * h
    amp = np.exp(-0.5 * (np.log(fh / formant) / 0.5) ** 2) * (fh < _SR / 2)
    voiced = np.sum(amp * np.sin(phase[..., None] * h), axis=-1)
    breath = rng.standard_normal((k, m)) * rng.uniform(0.05, 0.3)
    env = (1.0 - np.exp(-tau / 0.008)) * np.exp(-u * rng.uniform(1.5, 3.5)) * (u < 1.0)
    return _overlay(n, onsets, env * (voiced + breath))


def _siren(rng, n):
    t = np.arange(n) / _SR
    fc = rng.uniform(800.0, 2000.0)
    dev = rng.uniform(0.15, 0.40)
    gate = 1.0
    if rng.random() < 0.5:      # wail: slow sine sweep
        fm = rng.uniform(0.25, 1.2)
        sweep = np.sin(2 * np.pi * fm * t + rng.uniform(0, 2 * np.pi))
    else:                       # whoop: rising sweeps, each followed by a short pause
        fm = rng.uniform(1.5, 3.5)
        duty = rng.uniform(0.6, 1.0)
        cycle = np.mod(fm * t + rng.uniform(0, 1), 1.0)
        sweep = 2.0 * np.minimum(cycle / duty, 1.0) - 1.0
        gate = np.clip((duty - cycle) * 40.0, 0.0, 1.0) if duty < 1.0 else 1.0
    phase = _phase(fc * (1.0 + dev * sweep))
    tone = np.sin(phase) + rng.uniform(0.0, 0.5) * np.sin(2 * phase) + rng.uniform(0.0, 0.2) * np.sin(3 * phase)
    # Approaching or receding: a slow change in loudness.
    return tone * gate * (0.4 + 0.6 * _smooth_random(rng, n, 0.7))


def _clock_tick(rng, n):
    return _clicks(rng, n, 2.0, 7.0)


def _engine(rng, n):
    f0 = rng.uniform(25.0, 70.0) * (1.0 + 0.05 * (_smooth_random(rng, n, 2.0) - 0.5))
    # One period of the harmonics up to 4 kHz (built by an inverse FFT), read at a wandering pitch.
    table_size = 2048
    h = np.arange(1, int(4000 / 25) + 1)
    amp = h ** -1.0 * rng.lognormal(0.0, 0.5, len(h)) * (h * f0.max() < 4000.0)
    spec = np.zeros(table_size // 2 + 1, dtype=complex)
    spec[h] = amp * np.exp(1j * rng.uniform(0, 2 * np.pi, len(h)))
    table = np.fft.irfft(spec, table_size)
    pos = np.mod(np.cumsum(f0) / _SR, 1.0) * table_size
    tone = np.interp(pos, np.arange(table_size + 1), np.append(table, table[0]))
    tone /= np.sqrt(np.mean(tone ** 2)) + 1e-12
    t = np.arange(n) / _SR
    tone *= 1.0 + rng.uniform(0.1, 0.5) * np.sin(2 * np.pi * rng.uniform(3.0, 15.0) * t)
    noise = _noise(rng, n, 30.0, rng.uniform(300.0, 1500.0), tilt_db=-3.0)
    # Revving: a slow swell of the whole engine, as a gust swells the wind.
    rev = 1.0 - rng.uniform(0.0, 0.6) * _smooth_random(rng, n, rng.uniform(0.3, 1.0))
    return rev * (tone + noise * 10.0 ** (rng.uniform(-15.0, 10.0) / 20.0))


def _woodpecker(rng, n):
    return _clicks(rng, n, 5.0, 12.0)


def _wind(rng, n):
    floor = rng.uniform(0.15, 0.7)
    gust = floor + (1.0 - floor) * _smooth_random(rng, n, rng.uniform(0.3, 1.0))
    low = _noise(rng, n, 20.0, rng.uniform(150.0, 700.0), tilt_db=-3.0)
    bright = _noise(rng, n, 300.0, rng.uniform(1000.0, 2500.0), tilt_db=-3.0)
    x = gust * low + 0.5 * gust ** 2 * bright
    if rng.random() < 0.4:      # a whistle through a gap
        whistle = _noise(rng, n, (fw := rng.uniform(400.0, 1200.0)) * 0.97, fw * 1.03)
        x += rng.uniform(0.1, 0.4) * gust ** 3 * whistle
    return x


def _rain(rng, n):
    bed = _noise(rng, n, rng.uniform(300.0, 1000.0), 8000.0, tilt_db=-3.0) * 10.0 ** (rng.uniform(-30.0, -6.0) / 20.0)
    k = rng.poisson(rng.uniform(10.0, 150.0) * n / _SR)
    onsets = np.sort(rng.integers(0, n, k))
    m = int(0.03 * _SR)
    tau = np.arange(m)[None, :] / _SR
    f = rng.uniform(1500.0, 6000.0, (k, 1))
    grains = np.exp(-tau / rng.uniform(0.001, 0.008, (k, 1))) * np.sin(2 * np.pi * f * tau)
    drops = _overlay(n, onsets, grains * rng.lognormal(0.0, 0.8, (k, 1)))
    return bed + drops


def _chirping_birds(rng, n):
    k = rng.integers(4, 21)
    # Chirps come in bursts: a few burst starts, chirps packed after each.
    starts = np.sort(rng.uniform(0.0, 0.8 * n / _SR, rng.integers(1, 4)))
    which = rng.integers(0, len(starts), k)
    order = np.argsort(which, kind="stable")
    gaps = rng.uniform(0.05, 0.3, k)
    offsets = np.zeros(k)
    for b in range(len(starts)):        # a handful of bursts, not samples
        members = order[which[order] == b]
        offsets[members] = starts[b] + np.concatenate([[0.0], np.cumsum(gaps[members])[:-1]])
    onsets = (offsets * _SR).astype(np.int64)
    durs = rng.uniform(0.03, 0.4, (k, 1))
    m = int(0.4 * _SR)
    tau = np.arange(m)[None, :] / _SR
    u = np.minimum(tau / durs, 1.0)
    f = rng.uniform(1000.0, 3500.0, (k, 1)) * rng.uniform(1.2, 2.2, (k, 1)) ** u
    phase = _phase(f)
    env = np.sin(np.pi * u) ** 2 * (tau < durs)
    grains = env * (np.sin(phase) + rng.uniform(0.0, 0.4) * np.sin(2 * phase)) * rng.uniform(0.4, 1.0, (k, 1))
    return _overlay(n, onsets, grains)


def _crackling_fire(rng, n):
    clusters = rng.poisson(rng.uniform(1.0, 4.0) * n / _SR) + 1
    centres = rng.uniform(0.0, n / _SR, clusters)
    per = rng.integers(1, 7, clusters)
    times = np.repeat(centres, per) + rng.uniform(0.0, 0.04 * per.max(), per.sum())
    onsets = np.sort((times * _SR).astype(np.int64))
    k = len(onsets)
    m = int(0.01 * _SR)
    tau = np.arange(m)[None, :] / _SR
    grains = rng.standard_normal((k, m)) * np.exp(-tau / rng.uniform(0.0003, 0.002, (k, 1)))
    pops = _overlay(n, onsets, grains * np.minimum(rng.pareto(2.0, (k, 1)) + 0.2, 8.0))
    rumble = _noise(rng, n, 20.0, 300.0) * 10.0 ** (rng.uniform(-30.0, -12.0) / 20.0)
    hiss = _noise(rng, n, rng.uniform(400.0, 1500.0), 8000.0, tilt_db=-3.0) * 10.0 ** (rng.uniform(-30.0, -6.0) / 20.0)
    return pops + rumble + hiss


def _doorbell(rng, n):
    f1 = rng.uniform(500.0, 1000.0)
    f2 = f1 * rng.uniform(0.75, 0.84)
    gap = rng.uniform(0.35, 0.7)
    start = rng.uniform(0.0, 0.3)
    times = [start, start + gap]
    if rng.random() < 0.3:      # rung twice
        again = start + 2 * gap + rng.uniform(0.2, 0.5)
        times += [again, again + gap]
    onsets = (np.array(times) * _SR).astype(np.int64)
    tau = np.arange(n)[None, :] / _SR
    decay = rng.uniform(0.4, 1.2)
    f = np.array([[f1], [f2]])
    tones = np.zeros((2, n))
    for ratio, weight in ((1.0, 1.0), (2.0, 0.5), (3.0, 0.25), (4.2, 0.1)):   # bell-like partials
        if ratio * f1 < _SR / 2:
            tones += weight * np.exp(-tau / (decay / ratio ** 0.7)) * np.sin(2 * np.pi * ratio * f * tau)
    # The hammer's strike: a short noise burst at each onset.
    tones += 0.3 * rng.standard_normal((2, n)) * np.exp(-tau / 0.002)
    return _overlay(n, onsets, tones[np.arange(len(onsets)) % 2])


_SYNTHS = [_dog, _siren, _clock_tick, _engine, _woodpecker,
           _wind, _rain, _chirping_birds, _crackling_fire, _doorbell]


def synthesise(target: int, rng: np.random.Generator) -> np.ndarray:
    """One clip of class ``target`` as int16 samples ``(samples,)`` at SAMPLE_RATE, at most CLIP_SECONDS long."""
    full = int(round(CLIP_SECONDS * _SR))
    n = full if rng.random() < 0.8 else int(rng.uniform(1.5, CLIP_SECONDS) * _SR)
    lead = int(rng.uniform(0.05, 0.6) * _SR) if rng.random() < 0.4 else 0
    trail = int(rng.uniform(0.05, 0.6) * _SR) if rng.random() < 0.4 else 0
    active = n - lead - trail

    sound = _SYNTHS[target](rng, active)
    sound /= np.max(np.abs(sound)) + 1e-12
    peak = 10.0 ** (rng.uniform(-30.0, -3.0) / 20.0)
    # Background noise 30-55 dB below the peak, but never below ~3 LSB RMS once
    # written, or it would round to runs of exact zeros that the "zeros" trim strips.
    floor_db = 20.0 * np.log10(3.0 / 32767.0 / peak)
    background = _noise(rng, active, 50.0, 8000.0, tilt_db=-3.0)
    sound = sound + background * 10.0 ** (max(rng.uniform(-55.0, -30.0), floor_db) / 20.0)
    # A 5 ms fade where the sound meets a silent margin, so the edge does not click.
    fade = np.minimum(1.0, np.arange(active) / (0.005 * _SR))
    if lead:
        sound *= fade
    if trail:
        sound *= fade[::-1]
    sound *= peak / (np.max(np.abs(sound)) + 1e-12)
    out = np.zeros(n, dtype=np.int16)   # the margins stay exactly zero
    out[lead:lead + active] = np.round(sound * 32767.0).astype(np.int16)
    return out
