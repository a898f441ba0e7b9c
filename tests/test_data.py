"""soundclr.data: parsing, folds, decoding, the on-disk cache and bad input.

Every dataset is built in the test from tiny clips (tens of milliseconds)
written with soundfile in the real layouts, so the real code paths run.
"""
from __future__ import annotations

import csv
import json
import math
import os
import stat
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from soundclr.audio import io as audio_io
from soundclr.audio.io import AudioError, read_audio
from soundclr.config import DataConfig
from soundclr.data import bank as data_bank
from soundclr.data import cache as data_cache
from soundclr.data.bank import WaveBank, load_bank
from soundclr.data.layouts import DatasetError, dataset_folder

ESC_COLUMNS = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]
US8K_COLUMNS = ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"]
ESC10_TARGETS = (1, 3, 4)   # ESC-10 rows in the fake ESC-50: remapped to 0, 1, 2


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def pcm(seed: int, frames: int, channels: int = 1) -> np.ndarray:
    """Random int16 audio, (frames,) or (frames, channels)."""
    rng = np.random.default_rng(seed)
    shape = (frames,) if channels == 1 else (frames, channels)
    return rng.integers(-20000, 20000, size=shape).astype(np.int16)


def make_esc(root: Path, folder: str = "esc50", n_targets: int = 6, folds: int = 5,
             columns: list[str] = ESC_COLUMNS) -> dict[str, np.ndarray]:
    """An ESC-50-layout folder: one PCM-16 44.1 kHz clip per (fold, target); returns filename -> samples."""
    clips, rows = {}, []
    audio = _mkdir(root / folder / "audio")
    for fold in range(1, folds + 1):
        for target in range(n_targets):
            name = f"{fold}-{target}-A-0.wav"
            samples = pcm(100 * fold + target, 2205 + 441 * ((fold + target) % 3))
            sf.write(audio / name, samples, 44100, subtype="PCM_16")
            clips[name] = samples
            rows.append(dict(filename=name, fold=fold, target=target, category=f"class{target}",
                             esc10=str(target in ESC10_TARGETS), src_file=str(target), take="A"))
    write_csv(root / folder / "meta" / "esc50.csv", columns, rows)
    return clips


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def esc_cfg(root: Path, dataset: str = "esc50", **kw) -> DataConfig:
    return DataConfig(dataset=dataset, data_root=str(root), sample_rate=kw.pop("sample_rate", 44100), **kw)


def count_decodes(monkeypatch) -> list:
    calls = []
    real = data_cache.decode_file

    def counting(path, sample_rate):
        calls.append(path)
        return real(path, sample_rate)
    monkeypatch.setattr(data_cache, "decode_file", counting)
    return calls


def forbid_decoding(monkeypatch) -> None:
    def fail(path, sample_rate):
        raise AssertionError(f"decoded {path} again instead of using the cache")
    monkeypatch.setattr(data_cache, "decode_file", fail)


def clip(bank: WaveBank, name: str) -> np.ndarray:
    i = bank.filenames.index(name)
    return bank.waves[i, : bank.lengths[i]].numpy()


def mapped_from(tensor: torch.Tensor, path: Path) -> bool:
    """Whether the tensor's memory lies in a memory mapping of ``path`` (Linux /proc/self/maps)."""
    ptr, target = tensor.data_ptr(), str(path.resolve())
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].strip() == target:
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                if lo <= ptr < hi:
                    return True
    return False


@pytest.fixture
def esc(tmp_path):
    return tmp_path, make_esc(tmp_path)


# -- parsing and folds -------------------------------------------------------------

def test_esc50_bank_holds_every_clip_exactly(esc):
    root, clips = esc
    bank = load_bank(esc_cfg(root), progress=False)
    assert len(bank) == 30 and bank.n_classes == 6 and bank.dataset == "esc50" and bank.sample_rate == 44100
    assert bank.class_names == [f"class{t}" for t in range(6)]
    assert bank.waves.dtype == torch.int16 and bank.waves.shape == (30, max(len(c) for c in clips.values()))
    for i, name in enumerate(bank.filenames):
        fold, target = int(Path(name).name.split("-")[0]), int(Path(name).name.split("-")[1])
        assert name == f"audio/{Path(name).name}"
        assert (bank.folds[i], bank.labels[i]) == (fold, target)
        assert bank.lengths[i] == len(clips[Path(name).name])
        np.testing.assert_array_equal(clip(bank, name), clips[Path(name).name])   # PCM-16 at the same rate: exact
        assert not bank.waves[i, bank.lengths[i]:].any()                          # zero padding
    assert sorted(bank.filenames) == sorted(f"audio/{n}" for n in clips)


def test_esc10_is_the_remapped_esc10_rows_of_the_esc50_cache(esc, monkeypatch):
    root, clips = esc
    bank = load_bank(esc_cfg(root, "esc10"), progress=False)
    assert bank.dataset == "esc10" and len(bank) == 5 * len(ESC10_TARGETS)
    assert bank.class_names == [f"class{t}" for t in ESC10_TARGETS]
    for i, name in enumerate(bank.filenames):
        original = int(Path(name).name.split("-")[1])
        assert original in ESC10_TARGETS and bank.labels[i] == ESC10_TARGETS.index(original)
        np.testing.assert_array_equal(clip(bank, name), clips[Path(name).name])
    assert bank.waves.shape[1] == int(bank.lengths.max())
    # One cache for both, and ESC-10 is a view of its memory map.
    npys = list((root / "esc50" / data_cache.CACHE_DIRNAME).glob("*.npy"))
    assert len(npys) == 1 and mapped_from(bank.waves, npys[0])
    forbid_decoding(monkeypatch)
    assert len(load_bank(esc_cfg(root, "esc50"), progress=False)) == 30


def write_us8k(root: Path) -> dict[str, np.ndarray]:
    """A US8K-layout folder with mono and stereo files at 44.1, 22.05 and 48 kHz; returns the expected mono at 44.1."""
    rows, expected = [], {}
    specs = [(44100, 1), (44100, 2), (22050, 1), (48000, 2)]
    for fold in range(1, 11):
        for k, (rate, channels) in enumerate(specs[: 2 if fold > 2 else 4]):
            cls = (fold + k) % 10
            name = f"{100 + fold}-{cls}-0-{k}.wav"
            frames = int(0.05 * rate)
            if channels == 2:
                left = pcm(fold * 10 + k, frames).astype(np.int32) // 2 * 2
                right = pcm(fold * 10 + k + 5, frames).astype(np.int32) // 2 * 2
                samples = np.stack([left, right], axis=1).astype(np.int16)
                mono = ((left + right) // 2).astype(np.int16)      # even sums: the mean is exact
            else:
                samples = mono = pcm(fold * 10 + k, frames)
            sf.write(_mkdir(root / "us8k" / "audio" / f"fold{fold}") / name, samples, rate, subtype="PCM_16")
            expected[f"audio/fold{fold}/{name}"] = (mono, rate, frames)
            rows.append(dict(slice_file_name=name, fsID=100 + fold, start=0, end=0.05, salience=1,
                             fold=fold, classID=cls, **{"class": f"urban{cls}"}))
    write_csv(root / "us8k" / "metadata" / "UrbanSound8K.csv", US8K_COLUMNS, rows)
    return expected


def test_us8k_folds_paths_stereo_and_mixed_rates(tmp_path):
    expected = write_us8k(tmp_path)
    bank = load_bank(DataConfig(dataset="us8k", data_root=str(tmp_path), sample_rate=44100), progress=False)
    assert len(bank) == len(expected) and bank.n_classes == 10 and bank.fold_ids == list(range(1, 11))
    assert bank.class_names == [f"urban{c}" for c in range(10)]
    for i, name in enumerate(bank.filenames):
        mono, rate, frames = expected[name]
        fold, cls = int(name.split("/")[1][4:]), int(Path(name).name.split("-")[1])
        assert (bank.folds[i], bank.labels[i]) == (fold, cls)
        assert bank.lengths[i] == math.ceil(frames * 44100 / rate)
        if rate == 44100:
            np.testing.assert_array_equal(clip(bank, name), mono)   # stereo averaged to mono, exactly


def fake_generator(monkeypatch, make=None) -> list:
    """Stand in for soundclr.data.synthetic.ensure_synthetic: record calls, optionally make the folder."""
    calls = []

    def ensure_synthetic(folder, seed=0):
        calls.append((Path(folder), seed))
        if make is not None and not Path(folder).exists():
            make(Path(folder))
        return Path(folder)
    monkeypatch.setattr(data_bank, "ensure_synthetic", ensure_synthetic)
    return calls


def test_synthetic_layout_is_read_like_esc50(tmp_path, monkeypatch):
    make_esc(tmp_path, folder="synthetic", n_targets=3, columns=["filename", "fold", "target", "category"])
    calls = fake_generator(monkeypatch)
    bank = load_bank(DataConfig(dataset="synthetic", data_root=str(tmp_path), sample_rate=44100), progress=False)
    assert calls == [(tmp_path / "synthetic", 0)]
    assert bank.dataset == "synthetic" and bank.n_classes == 3 and len(bank) == 15 and bank.fold_ids == [1, 2, 3, 4, 5]
    assert bank.class_names == ["class0", "class1", "class2"]


def test_synthetic_is_generated_on_first_use(tmp_path, monkeypatch):
    calls = fake_generator(monkeypatch, make=lambda folder: make_esc(folder.parent, folder="synthetic", n_targets=2))
    bank = load_bank(DataConfig(dataset="synthetic", data_root=str(tmp_path), sample_rate=44100), progress=False)
    assert calls == [(tmp_path / "synthetic", 0)] and bank.n_classes == 2 and len(bank) == 10


def test_dataset_folder():
    assert dataset_folder("esc10", "/d") == Path("/d/esc50")
    assert dataset_folder(DataConfig(dataset="us8k", data_root="/x")) == Path("/x/us8k")
    with pytest.raises(DatasetError, match="esc50, esc10, us8k, synthetic"):
        dataset_folder("esc100", "/d")


def test_split_with_and_without_a_validation_fold(esc):
    bank = load_bank(esc_cfg(esc[0]), progress=False)
    folds = bank.folds
    s = bank.split(test_fold=2)
    assert s.val is None and s.train.dtype == s.test.dtype == torch.int64
    assert set(folds[s.test].tolist()) == {2} and len(s.test) == 6
    assert sorted(s.train.tolist() + s.test.tolist()) == list(range(30))
    s = bank.split(test_fold=5, val_fold=1)
    assert set(folds[s.test].tolist()) == {5} and set(folds[s.val].tolist()) == {1}
    assert set(folds[s.train].tolist()) == {2, 3, 4}
    assert sorted(s.train.tolist() + s.val.tolist() + s.test.tolist()) == list(range(30))
    with pytest.raises(DatasetError, match=r"test_fold=6 .*\[1, 2, 3, 4, 5\]"):
        bank.split(test_fold=6)
    with pytest.raises(ValueError, match=r"val_fold=0 .*\[1, 2, 3, 4, 5\]"):
        bank.split(test_fold=1, val_fold=0)
    with pytest.raises(DatasetError, match="equals test_fold"):
        bank.split(test_fold=3, val_fold=3)


def test_batch_subset_and_to(esc):
    bank = load_bank(esc_cfg(esc[0]), progress=False)
    idx = torch.nonzero(bank.lengths == bank.lengths.min()).flatten()[:3]
    waves, lengths = bank.batch(idx)
    assert waves.dtype == torch.int16 and waves.shape == (3, int(bank.lengths.min()))   # trimmed to the batch
    assert torch.equal(waves, bank.waves[idx, : waves.shape[1]]) and torch.equal(lengths, bank.lengths[idx])
    mixed = [0, 7, 13]
    waves, lengths = bank.batch(mixed, device="cpu")
    assert waves.shape == (3, int(bank.lengths[mixed].max()))
    sub = bank.subset(mixed)
    assert sub.filenames == [bank.filenames[i] for i in mixed] and torch.equal(sub.labels, bank.labels[mixed])
    assert torch.equal(sub.waves, bank.waves[mixed, : sub.waves.shape[1]]) and sub.class_names == bank.class_names
    moved = bank.to("cpu")
    assert len(moved) == len(bank) and torch.equal(moved.waves, bank.waves)


# -- the cache -------------------------------------------------------------------

def cache_files(root: Path, folder: str = "esc50") -> list[str]:
    cache = root / folder / data_cache.CACHE_DIRNAME
    return sorted(p.name for p in cache.iterdir()) if cache.is_dir() else []


def test_second_load_is_memory_mapped_from_the_cache(esc, monkeypatch):
    root = esc[0]
    first = load_bank(esc_cfg(root), progress=False)
    forbid_decoding(monkeypatch)
    second = load_bank(esc_cfg(root), progress=False)
    for field in ("waves", "lengths", "labels", "folds"):
        assert torch.equal(getattr(first, field), getattr(second, field))
    assert (first.filenames, first.class_names) == (second.filenames, second.class_names)
    (npy,) = (root / "esc50" / data_cache.CACHE_DIRNAME).glob("*.npy")
    assert mapped_from(second.waves, npy)
    assert [n.rsplit(".", 1)[1] for n in cache_files(root)] == ["json", "npy"]


@pytest.mark.parametrize("change", ["metadata", "audio file", "format version", "sample rate"])
def test_cache_is_invalidated(esc, monkeypatch, change):
    root, clips = esc
    load_bank(esc_cfg(root), progress=False)
    rate = 44100
    if change == "metadata":
        csv_path = root / "esc50" / "meta" / "esc50.csv"
        csv_path.write_text(csv_path.read_text().replace("class2", "renamed"))
    elif change == "audio file":
        path = root / "esc50" / "audio" / "1-0-A-0.wav"
        clips["1-0-A-0.wav"] = pcm(999, len(clips["1-0-A-0.wav"]))
        sf.write(path, clips["1-0-A-0.wav"], 44100, subtype="PCM_16")
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))   # same size, later mtime
    elif change == "format version":
        monkeypatch.setattr(data_cache, "FORMAT_VERSION", data_cache.FORMAT_VERSION + 1)
    else:
        rate = 22050
    calls = count_decodes(monkeypatch)
    bank = load_bank(esc_cfg(root, sample_rate=rate), progress=False)
    assert len(calls) == 30
    if change == "metadata":
        assert bank.class_names[2] == "renamed"
    if change == "audio file":
        np.testing.assert_array_equal(clip(bank, "audio/1-0-A-0.wav"), clips["1-0-A-0.wav"])
    if change == "sample rate":
        assert bank.sample_rate == 22050
        assert [int(n) for n in bank.lengths] == [math.ceil(len(clips[Path(f).name]) / 2) for f in bank.filenames]
        assert len(cache_files(root)) == 4        # both rates stay cached
    else:
        assert len(cache_files(root)) == 2        # the stale cache was removed


def test_cache_dir_outside_the_dataset(esc, tmp_path_factory, monkeypatch):
    root, elsewhere = esc[0], tmp_path_factory.mktemp("cache")
    first = load_bank(esc_cfg(root), progress=False, cache_dir=elsewhere)
    assert cache_files(root) == [] and len(list(elsewhere.glob("esc50-*.npy"))) == 1
    forbid_decoding(monkeypatch)
    assert torch.equal(load_bank(esc_cfg(root), progress=False, cache_dir=elsewhere).waves, first.waves)


def test_crash_mid_decode_leaves_no_valid_looking_cache(esc, monkeypatch):
    root = esc[0]
    real, calls = data_cache.decode_file, []

    def crash_on_third(path, sample_rate):
        calls.append(path)
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        return real(path, sample_rate)
    monkeypatch.setattr(data_cache, "decode_file", crash_on_third)
    with pytest.raises(RuntimeError, match="simulated crash"):
        load_bank(esc_cfg(root), progress=False)
    assert cache_files(root) == []
    monkeypatch.setattr(data_cache, "decode_file", real)
    assert len(load_bank(esc_cfg(root), progress=False)) == 30


def test_crash_before_the_sidecar_forces_a_fresh_decode(esc, monkeypatch):
    root = esc[0]

    def crash(path, obj):
        raise KeyboardInterrupt
    monkeypatch.setattr(data_cache, "atomic_write_json", crash)
    with pytest.raises(KeyboardInterrupt):
        load_bank(esc_cfg(root), progress=False)
    assert [n.rsplit(".", 1)[1] for n in cache_files(root)] == ["npy"]   # an array without its sidecar
    monkeypatch.undo()
    calls = count_decodes(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # an unfinished cache is no corruption: rebuilt without a word
        bank = load_bank(esc_cfg(root), progress=False)
    assert len(calls) == 30 and len(bank) == 30


def cache_paths(root: Path) -> tuple[Path, Path]:
    """The (sidecar, array) of the one cache in the esc50 folder."""
    (side,) = (root / "esc50" / data_cache.CACHE_DIRNAME).glob("*.json")
    return side, side.with_suffix(".npy")


def garble_sidecar(side: Path, case: str) -> None:
    text = side.read_text()
    record = json.loads(text)
    if case == "truncated":
        side.write_text(text[: len(text) // 2])
    elif case == "empty":
        side.write_bytes(b"")
    elif case == "binary":
        side.write_bytes(b"\x00\xff" * 50)
    elif case == "not an object":
        side.write_text("[1, 2, 3]")
    elif case == "kept out of range":
        record["kept"][-1] = 10_000
        side.write_text(json.dumps(record))
    elif case == "lengths missing":
        del record["lengths"]
        side.write_text(json.dumps(record))
    elif case == "skipped names an unknown file":
        record["skipped"] = [["audio/nope.wav", "missing"]]
        side.write_text(json.dumps(record))
    elif case == "fingerprint flipped":
        record["fingerprint"] = record["fingerprint"][:-1] + ("0" if record["fingerprint"][-1] != "0" else "1")
        side.write_text(json.dumps(record))
    else:
        raise ValueError(case)


def load_warned(root: Path, monkeypatch) -> tuple[WaveBank, list[str], list]:
    calls = count_decodes(monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bank = load_bank(esc_cfg(root), progress=False)
    monkeypatch.undo()
    return bank, [str(w.message) for w in caught], calls


def in_memory(bank: WaveBank) -> WaveBank:
    """The bank with its waves copied out of the memory map (a file truncated under a map faults on reading)."""
    from dataclasses import replace
    return replace(bank, waves=bank.waves.clone())


def assert_same_bank(a: WaveBank, b: WaveBank) -> None:
    for field in ("waves", "lengths", "labels", "folds"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert (a.filenames, a.class_names) == (b.filenames, b.class_names)


@pytest.mark.parametrize("case", ["truncated", "empty", "binary", "not an object", "kept out of range",
                                  "lengths missing", "skipped names an unknown file", "fingerprint flipped"])
def test_corrupt_sidecar_is_named_in_a_warning_and_the_cache_rebuilt(esc, monkeypatch, case):
    root = esc[0]
    reference = load_bank(esc_cfg(root), progress=False)
    side, npy = cache_paths(root)
    garble_sidecar(side, case)
    bank, messages, calls = load_warned(root, monkeypatch)
    ours = [m for m in messages if str(side) in m]
    assert len(ours) == 1 and "rebuilt" in ours[0], messages
    assert len(calls) == 30
    assert_same_bank(bank, reference)
    assert cache_paths(root) == (side, npy) and len(cache_files(root)) == 2
    forbid_decoding(monkeypatch)                       # the rebuilt cache is sound: used as is, silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same_bank(load_bank(esc_cfg(root), progress=False), reference)


@pytest.mark.parametrize("case", ["truncated", "header cut", "garbage", "missing", "wrong shape"])
def test_corrupt_cache_array_is_named_in_a_warning_and_rebuilt(esc, monkeypatch, case):
    root = esc[0]
    reference = in_memory(load_bank(esc_cfg(root), progress=False))   # no map of the file left to spoil
    side, npy = cache_paths(root)
    blob = npy.read_bytes()
    if case == "truncated":
        npy.write_bytes(blob[: len(blob) - 100])
    elif case == "header cut":
        npy.write_bytes(blob[:40])
    elif case == "garbage":
        npy.write_bytes(b"not a numpy file" * 100)
    elif case == "missing":
        npy.unlink()
    else:
        rows, width = json.loads(side.read_text())["shape"]
        np.save(npy, np.zeros((rows, width - 1), np.int16))
    bank, messages, calls = load_warned(root, monkeypatch)
    ours = [m for m in messages if str(npy) in m]
    assert len(ours) == 1 and "rebuilt" in ours[0], messages
    assert len(calls) == 30
    assert_same_bank(bank, reference)
    assert len(cache_files(root)) == 2


def test_tidy_removes_abandoned_temporaries_and_stale_caches_only(esc, monkeypatch):
    from soundclr.files import atomic_path
    root = esc[0]
    load_bank(esc_cfg(root), progress=False)
    cache = root / "esc50" / data_cache.CACHE_DIRNAME
    side, npy = cache_paths(root)
    old = time.time() - 2 * 86400

    def temporary(name: str, age: float | None) -> Path:
        """A temporary as store names it, left behind (as by a killed process) with the given mtime."""
        with pytest.raises(KeyboardInterrupt):
            with atomic_path(cache / name) as tmp:
                raise KeyboardInterrupt
        tmp.write_bytes(b"partial")
        if age is not None:
            os.utime(tmp, (age, age))
        return tmp
    abandoned = temporary(npy.name, old)
    abandoned_other = temporary("esc50-16000hz-v1-0123456789abcdef.npy", old)
    live = temporary(npy.name, None)                                    # another process still decoding
    stale = cache / "esc50-44100hz-v0-0123456789abcdef.npy"            # an older format's cache
    legacy = cache / f"{npy.name}.tmp-123-abcdef12"                     # an earlier version's temporary
    other_rate = cache / "esc50-16000hz-v1-0123456789abcdef.json"
    mine = cache / "notes.txt"
    for path in (stale, legacy, other_rate, mine):
        path.write_bytes(b"x")
    data_cache._tidy(cache, "esc50-44100hz-", keep=npy.stem)
    left = set(cache.iterdir())
    assert left == {side, npy, live, other_rate, mine}, sorted(p.name for p in left)
    assert not (abandoned.exists() or abandoned_other.exists() or stale.exists() or legacy.exists())


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664)])
def test_cache_files_respect_the_umask(esc, mask, mode):
    root = esc[0]
    old = os.umask(mask)
    try:
        load_bank(esc_cfg(root), progress=False)
    finally:
        os.umask(old)
    for path in cache_paths(root):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


# -- signal ------------------------------------------------------------------------------

def sine(freq: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


@pytest.mark.parametrize("rate", [22050, 48000])
def test_resampling_matches_a_sine_generated_at_the_target_rate(tmp_path, rate):
    path = tmp_path / "tone.wav"
    sf.write(path, sine(1000, rate, 0.2), rate, subtype="FLOAT")
    wave = read_audio(path, 44100)
    reference = sine(1000, 44100, 0.2)
    assert wave.dtype == torch.float32 and wave.shape == (math.ceil(0.2 * rate * 44100 / rate),)
    middle = slice(200, len(reference) - 200)    # away from the edges, where the filter sees zeros
    np.testing.assert_allclose(wave.numpy()[middle], reference[middle], atol=2e-3)


def test_downsampling_is_band_limited(tmp_path):
    path = tmp_path / "high.wav"
    sf.write(path, sine(8500, 48000, 0.2), 48000, subtype="FLOAT")    # just above the 8 kHz Nyquist of 16 kHz
    wave = read_audio(path, 16000)[200:-200]
    assert wave.pow(2).mean().sqrt() < 0.03 * 0.5 / math.sqrt(2)       # aliased energy below -30 dB
    in_band = tmp_path / "low.wav"
    sf.write(in_band, sine(6000, 48000, 0.2), 48000, subtype="FLOAT")  # inside the band: kept
    np.testing.assert_allclose(read_audio(in_band, 16000)[200:-200].numpy(), sine(6000, 16000, 0.2)[200:-200], atol=0.02)


def test_int16_scaling(tmp_path):
    root = tmp_path
    make_esc(root, n_targets=1, folds=2)
    loud = sine(440, 44100, 0.05, amplitude=2.0)      # a float file past full scale is divided by its peak
    sf.write(root / "esc50" / "audio" / "1-0-A-0.wav", loud, 44100, subtype="FLOAT")
    hi_res = (sine(440, 44100, 0.05, amplitude=0.3) * 2**23).round() / 2**23
    sf.write(root / "esc50" / "audio" / "2-0-A-0.wav", hi_res, 44100, subtype="PCM_24")
    bank = load_bank(esc_cfg(root), progress=False)
    scaled = loud / np.abs(loud).max()
    expected = np.clip(np.round(scaled * 32768), -32768, 32767)
    np.testing.assert_array_equal(clip(bank, "audio/1-0-A-0.wav"), expected)
    assert np.abs(clip(bank, "audio/2-0-A-0.wav") / 32768 - hi_res).max() <= 0.5 / 32768 + 1e-9
    np.testing.assert_allclose(read_audio(root / "esc50" / "audio" / "1-0-A-0.wav", 44100).numpy(), scaled, atol=1e-6)
    waves, lengths = bank.batch([bank.filenames.index("audio/2-0-A-0.wav")])
    assert torch.allclose(audio_io.to_float(waves)[0], read_audio(root / "esc50" / "audio" / "2-0-A-0.wav", 44100),
                          atol=0.5 / 32768 + 1e-7)


# -- bad input -------------------------------------------------------------------------

BAD = "3-2-A-0.wav"


def spoil(path: Path, case: str) -> None:
    if case == "corrupt":
        path.write_bytes(b"this is not audio" * 64)
    elif case == "zero bytes":
        path.write_bytes(b"")
    elif case == "zero frames":
        sf.write(path, np.zeros(0, np.int16), 44100, subtype="PCM_16")
    elif case == "truncated":
        blob = path.read_bytes()
        path.write_bytes(blob[: len(blob) // 2])
    elif case == "missing":
        path.unlink()
    else:
        samples = sine(440, 44100, 0.05)
        samples[100] = np.nan if case == "nan" else np.inf
        sf.write(path, samples, 44100, subtype="FLOAT")


CASES = ["corrupt", "zero bytes", "zero frames", "truncated", "missing", "nan", "inf"]


@pytest.mark.parametrize("case", CASES)
def test_bad_file_raises_naming_it(esc, case):
    root = esc[0]
    spoil(root / "esc50" / "audio" / BAD, case)
    with pytest.raises(DatasetError) as err:
        load_bank(esc_cfg(root), progress=False)
    message = str(err.value)
    assert str(root / "esc50" / "audio" / BAD) in message and 'on_bad_file="skip"' in message
    assert "soundclr data download esc50" in message and cache_files(root) == []
    with pytest.raises(AudioError, match=BAD):
        read_audio(root / "esc50" / "audio" / BAD, 44100)


@pytest.mark.parametrize("case", CASES)
def test_bad_file_is_skipped_and_listed_once(esc, case, monkeypatch):
    root, clips = esc
    spoil(root / "esc50" / "audio" / BAD, case)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bank = load_bank(esc_cfg(root, on_bad_file="skip"), progress=False)
    ours = [w for w in caught if BAD in str(w.message)]
    assert len(ours) == 1 and "1 unusable" in str(ours[0].message)
    assert len(bank) == 29 and f"audio/{BAD}" not in bank.filenames
    for name in bank.filenames[:5]:
        np.testing.assert_array_equal(clip(bank, name), clips[Path(name).name])
    # The cache remembers the skipped file: strict mode still refuses, without decoding again.
    forbid_decoding(monkeypatch)
    with pytest.raises(DatasetError, match=BAD):
        load_bank(esc_cfg(root), progress=False)


def test_esc10_ignores_bad_files_outside_esc10(esc):
    root = esc[0]
    (root / "esc50" / "audio" / "2-0-A-0.wav").unlink()     # target 0 is not in ESC-10
    assert len(load_bank(esc_cfg(root, "esc10"), progress=False)) == 15
    with pytest.raises(DatasetError, match="2-0-A-0.wav"):
        load_bank(esc_cfg(root, "esc50"), progress=False)
    (root / "esc50" / "audio" / "2-1-A-0.wav").unlink()     # target 1 is
    with pytest.raises(DatasetError, match="2-1-A-0.wav"):
        load_bank(esc_cfg(root, "esc10"), progress=False)


def test_nothing_usable_left_is_an_error(esc):
    root = esc[0]
    for path in (root / "esc50" / "audio").iterdir():
        path.write_bytes(b"")
    with pytest.warns(UserWarning, match="30 unusable"), pytest.raises(DatasetError, match="no usable clip"):
        load_bank(esc_cfg(root, on_bad_file="skip"), progress=False)


@pytest.mark.parametrize("mode", ["error", "skip"])
def test_metadata_with_a_bad_row_names_the_line(esc, mode):
    root = esc[0]
    csv_path = root / "esc50" / "meta" / "esc50.csv"
    lines = csv_path.read_text().splitlines()
    lines[3] = lines[3].replace(",1,", ",one,", 1)             # the fold of the third clip
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"esc50\.csv, line 4: column 'fold' should be an integer, found 'one'"):
        load_bank(esc_cfg(root, on_bad_file=mode), progress=False)


@pytest.mark.parametrize("mode", ["error", "skip"])
def test_metadata_missing_or_with_wrong_columns(esc, mode):
    root = esc[0]
    csv_path = root / "esc50" / "meta" / "esc50.csv"
    text = csv_path.read_text()
    csv_path.write_text(text.replace("filename,", "file,", 1))
    with pytest.raises(DatasetError) as err:
        load_bank(esc_cfg(root, on_bad_file=mode), progress=False)
    message = str(err.value)
    assert str(csv_path) in message and "expected filename, fold, target, category" in message
    assert "found file, fold, target" in message and "missing filename" in message
    csv_path.unlink()
    with pytest.raises(DatasetError, match=r"esc50\.csv not found.*meta/esc50\.csv and audio/"):
        load_bank(esc_cfg(root, on_bad_file=mode), progress=False)


@pytest.mark.parametrize("dataset, holds", [("esc50", "meta/esc50.csv and audio/"), ("esc10", "meta/esc50.csv"),
                                            ("us8k", "metadata/UrbanSound8K.csv and audio/")])
def test_missing_dataset_folder_says_how_to_get_it(tmp_path, dataset, holds):
    with pytest.raises(DatasetError) as err:
        load_bank(DataConfig(dataset=dataset, data_root=str(tmp_path)), progress=False)
    message = str(err.value)
    name = "us8k" if dataset == "us8k" else "esc50"
    assert f"soundclr data download {name} --root {tmp_path}" in message
    assert str(tmp_path / name) in message and holds in message


def test_nested_archive_folder_is_pointed_out(tmp_path):
    make_esc(tmp_path / "esc50", folder="ESC-50-master", n_targets=1, folds=1)
    with pytest.raises(DatasetError, match="ESC-50-master.*up into"):
        load_bank(esc_cfg(tmp_path), progress=False)
