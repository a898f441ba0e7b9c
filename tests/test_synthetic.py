"""The embedded synthetic dataset: ESC-50's layout, deterministic, balanced, atomic, learnable but not trivial."""
from __future__ import annotations

import csv
import hashlib
import json
import pathlib

import librosa
import numpy as np
import pytest
import soundfile as sf

from soundclr import datasets
from soundclr.data import synthetic
from soundclr.data.sounds import CLASSES, CLIP_SECONDS, CONFUSABLE_PAIRS, SAMPLE_RATE
from soundclr.data.synthetic import ensure_synthetic, generate

# The header of the real ESC-50 meta/esc50.csv, copied from the dataset.
ESC50_HEADER = "filename,fold,target,category,esc10,src_file,take"
SMALL = dict(clips_per_class_per_fold=1, folds=2)   # 20 clips: quick to make


def hashes(folder: pathlib.Path) -> dict[str, str]:
    """sha256 of every file under folder, by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def read_rows(folder: pathlib.Path) -> list[dict[str, str]]:
    with open(folder / "meta" / "esc50.csv", newline="") as f:
        return list(csv.DictReader(f))


def read_int16(path: pathlib.Path) -> np.ndarray:
    x, _ = sf.read(path, dtype="int16")
    return x


@pytest.fixture(scope="module")
def default(synthetic_root) -> pathlib.Path:
    """The default dataset (seed 0, 400 clips), shared with the other tests through conftest.py."""
    return synthetic_root / "synthetic"


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> pathlib.Path:
    return generate(tmp_path_factory.mktemp("small") / "synthetic", **SMALL)


# -- determinism ------------------------------------------------------------------

def test_same_seed_gives_the_same_bytes(small, tmp_path):
    again = generate(tmp_path / "again", progress=True, **SMALL)
    assert hashes(again) == hashes(small)
    assert len(hashes(small)) == 20 + 2          # every clip, the CSV and the marker


def test_a_clip_does_not_depend_on_how_many_were_made(small, default):
    # The per-clip seed comes from (seed, target, fold, index): the 20-clip dataset is a subset of the 400-clip one.
    for name, digest in hashes(small).items():
        if name.startswith("audio"):
            assert hashlib.sha256((default / name).read_bytes()).hexdigest() == digest, name


def test_another_seed_gives_other_audio(small, tmp_path):
    other = hashes(generate(tmp_path / "other", seed=1, **SMALL))
    mine = hashes(small)
    audio = [name for name in mine if name.startswith("audio")]
    assert sorted(other) == sorted(mine)         # same layout and names
    assert all(other[name] != mine[name] for name in audio)
    assert json.loads((tmp_path / "other" / "meta" / "SYNTHETIC.json").read_text())["seed"] == 1


# -- layout -------------------------------------------------------------------------

def test_csv_has_esc50_columns_and_layout(default):
    header = (default / "meta" / "esc50.csv").read_text().splitlines()[0]
    assert header == ESC50_HEADER
    rows = read_rows(default)
    assert len(rows) == 400
    assert sorted(p.name for p in (default / "audio").iterdir()) == sorted(r["filename"] for r in rows)
    for r in rows:
        assert r["filename"] == f"{r['fold']}-{r['src_file']}-{r['take']}-{r['target']}.wav"
        assert r["category"] == CLASSES[int(r["target"])]
        assert r["esc10"] == ("True" if int(r["target"]) % 2 == 0 else "False")   # the strings ESC-50 uses
    assert len({r["src_file"] for r in rows}) == 400


def test_every_class_has_the_same_number_of_clips_in_every_fold(default):
    rows = read_rows(default)
    counts: dict[tuple[int, int], int] = {}
    for r in rows:
        key = (int(r["fold"]), int(r["target"]))
        counts[key] = counts.get(key, 0) + 1
    assert set(counts) == {(fold, target) for fold in range(1, 6) for target in range(10)}
    assert set(counts.values()) == {8}


def test_other_sizes_are_balanced_too(small):
    rows = read_rows(small)
    assert sorted((int(r["fold"]), int(r["target"])) for r in rows) == [(f, t) for f in (1, 2) for t in range(10)]


def test_files_are_16khz_mono_pcm16_and_at_most_a_clip_long(default):
    assert CLIP_SECONDS == datasets.get("synthetic").clip_seconds
    lengths = []
    for path in (default / "audio").iterdir():
        info = sf.info(path)
        assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "PCM_16", SAMPLE_RATE, 1), path
        lengths.append(info.frames)
    lengths = np.array(lengths)
    full = int(CLIP_SECONDS * SAMPLE_RATE)
    assert lengths.max() <= full
    assert lengths.min() >= 1.5 * SAMPLE_RATE
    assert 0.6 < np.mean(lengths == full) < 0.95     # most full length, some shorter (US8K-like)


# -- per-clip variation -----------------------------------------------------------------

def test_some_clips_have_exactly_zero_margins(default):
    lead, trail, interior_zeros = [], [], []
    for path in sorted((default / "audio").iterdir()):
        x = read_int16(path)
        nz = np.flatnonzero(x)
        lead.append(nz[0])
        trail.append(len(x) - 1 - nz[-1])
        interior_zeros.append(np.mean(x[nz[0]:nz[-1] + 1] == 0))
    margin = int(0.05 * SAMPLE_RATE)
    lead, trail = np.array(lead), np.array(trail)
    for edge in (lead, trail):
        assert 0.2 < np.mean(edge >= margin) < 0.6   # some clips have a silent margin ...
        assert np.mean(edge == 0) > 0.3              # ... and many start (end) with sound right away
    # Between the margins, background noise: the "zeros" trim rule would stop at the margins.
    assert np.median(interior_zeros) < 0.05


def test_loudness_varies_and_nothing_clips(default):
    peaks = np.array([np.abs(read_int16(p).astype(np.int32)).max() for p in (default / "audio").iterdir()])
    peak_db = 20 * np.log10(peaks / 32767)
    assert peak_db.max() <= -3.0 + 0.01            # the loudest clip is 3 dB below full scale: no clipping
    assert peak_db.min() < -24 and peak_db.max() > -6
    assert np.std(peak_db) > 5


# -- ensure_synthetic: idempotent, repairing, atomic -------------------------------------------

def stamps(folder: pathlib.Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_ino) for p in [folder, *folder.rglob("*")]}


def test_ensure_does_not_rewrite_a_complete_folder(tmp_path):
    folder = ensure_synthetic(tmp_path / "syn", **SMALL)
    before = stamps(folder)
    assert ensure_synthetic(folder, **SMALL) == folder
    assert stamps(folder) == before


def test_ensure_repairs_an_incomplete_folder(small, tmp_path):
    folder = ensure_synthetic(tmp_path / "syn", **SMALL)
    expected = hashes(small)
    victim = next((folder / "audio").iterdir())
    victim.unlink()
    ensure_synthetic(folder, **SMALL)
    assert hashes(folder) == expected
    (folder / "meta" / "esc50.csv").unlink()
    ensure_synthetic(folder, **SMALL)
    assert hashes(folder) == expected


def test_ensure_regenerates_for_another_seed_or_size(small, tmp_path):
    folder = ensure_synthetic(tmp_path / "syn", **SMALL)
    ensure_synthetic(folder, seed=3, **SMALL)
    assert hashes(folder) != hashes(small)
    ensure_synthetic(folder, seed=3, clips_per_class_per_fold=1, folds=3)
    assert len(read_rows(folder)) == 30


def test_an_interrupted_generation_leaves_the_old_folder_alone(small, tmp_path, monkeypatch):
    folder = ensure_synthetic(tmp_path / "syn", **SMALL)
    calls = {"n": 0}
    real = synthetic.synthesise

    def failing(target, rng):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt("simulated interruption")
        return real(target, rng)

    monkeypatch.setattr(synthetic, "synthesise", failing)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic(folder, seed=7, **SMALL)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path / "fresh", **SMALL)
    assert hashes(folder) == hashes(small)        # still the complete seed-0 dataset
    assert not (tmp_path / "fresh").exists()      # nothing that could look complete
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn"]   # no temporary folders left


def test_refuses_to_overwrite_a_folder_it_did_not_make(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a synthetic dataset"):
        ensure_synthetic(folder, **SMALL)
    assert (folder / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("bad", [dict(seed=-1), dict(clips_per_class_per_fold=0), dict(folds=2.5)])
def test_bad_arguments_name_the_parameter(tmp_path, bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        generate(tmp_path / "x", **{**SMALL, **bad})


# -- learnable, but not trivially -------------------------------------------------------------

def test_classes_are_distinguishable_but_the_confusable_pairs_are_confused(default):
    # Nearest class centroid of time-averaged log-mel spectra (librosa), leave-one-fold-out.
    rows = read_rows(default)
    features = []
    for r in rows:
        x, sr = sf.read(default / "audio" / r["filename"], dtype="float32")
        nz = np.flatnonzero(x)
        x = x[nz[0]:nz[-1] + 1]                    # the pipeline's "zeros" trim
        mel = librosa.feature.melspectrogram(y=x, sr=sr, n_fft=512, hop_length=256, n_mels=64)
        features.append(librosa.power_to_db(mel, ref=np.max, top_db=80.0).mean(axis=1))
    features = np.stack(features)
    target = np.array([int(r["target"]) for r in rows])
    fold = np.array([int(r["fold"]) for r in rows])
    confusion = np.zeros((10, 10), dtype=int)
    for test_fold in range(1, 6):
        train, test = fold != test_fold, fold == test_fold
        centroids = np.stack([features[train & (target == c)].mean(axis=0) for c in range(10)])
        distance = ((features[test][:, None, :] - centroids[None]) ** 2).sum(axis=-1)
        np.add.at(confusion, (target[test], distance.argmin(axis=1)), 1)
    accuracy = np.trace(confusion) / confusion.sum()
    assert 0.35 < accuracy < 0.9, confusion       # chance is 0.1: learnable, but not by a trivial rule
    for a, b in CONFUSABLE_PAIRS:
        assert confusion[a, b] + confusion[b, a] >= 2, (CLASSES[a], CLASSES[b], confusion)
