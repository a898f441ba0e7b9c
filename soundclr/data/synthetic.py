"""The embedded default dataset, written in ESC-50's layout so that the same loader reads it.

The real datasets cannot be downloaded everywhere, so soundclr ships a generator that writes a
small dataset (``audio/<fold>-<src_file>-<take>-<target>.wav`` plus ``meta/esc50.csv`` with
ESC-50's columns) of the sounds of :mod:`soundclr.data.sounds`. It is deterministic: the same seed
gives byte-identical files (each clip has its own random generator, seeded from the dataset's seed
and the clip's place, so a clip depends neither on the order nor on the number of clips made).

Example::

    from soundclr.data.synthetic import ensure_synthetic
    folder = ensure_synthetic("data/synthetic")   # fast when already there
"""
from __future__ import annotations

import csv
import io
import json
import os
import pathlib
import shutil
import uuid

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from .sounds import CLASSES, CLIP_SECONDS, SAMPLE_RATE, synthesise

VERSION = 1                  # bump when the audio changes: ensure_synthetic then regenerates


COLUMNS = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]


MARKER = "SYNTHETIC.json"    # in meta/: what made this folder (seed, version, sizes)


def clip_seed(seed: int, target: int, fold: int, index: int) -> np.random.SeedSequence:
    """The seed of one clip: a function of (seed, target, fold, index in its class and fold) only.

    So a clip does not depend on the order of generation, nor on how many
    clips or folds were asked for.
    """
    return np.random.SeedSequence([seed, target, fold, index])


def _rows(clips_per_class_per_fold: int, folds: int) -> list[dict]:
    rows = []
    for fold in range(1, folds + 1):
        for target, category in enumerate(CLASSES):
            for j in range(clips_per_class_per_fold):
                # ESC-50 names files after a freesound id; ours encodes (target, fold, index).
                src = 1_000_000 + (target * 100 + fold) * 1000 + j
                rows.append(dict(filename=f"{fold}-{src}-A-{target}.wav", fold=fold, target=target,
                                 category=category, esc10=str(target % 2 == 0), src_file=src,
                                 take="A", _index=j))
    return sorted(rows, key=lambda r: r["filename"])


def _marker(seed: int, clips_per_class_per_fold: int, folds: int) -> dict:
    # "soundclr.synthetic": the name this generator had when the marker format was fixed; kept, so folders made
    # before the package layout stay recognised (a new name would regenerate every synthetic folder)
    return dict(generator="soundclr.synthetic", version=VERSION, seed=seed,
                clips_per_class_per_fold=clips_per_class_per_fold, folds=folds,
                sample_rate=SAMPLE_RATE, clip_seconds=CLIP_SECONDS, classes=CLASSES)


def _check_args(seed, clips_per_class_per_fold, folds) -> None:
    for name, value, lo, hi in (("seed", seed, 0, 2 ** 63), ("clips_per_class_per_fold", clips_per_class_per_fold, 1, 1000),
                                ("folds", folds, 1, 99)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
            raise ValueError(f"soundclr.synthetic: {name}={value!r} is not valid: expected an integer in {lo}..{hi}")


def _is_ours_or_empty(folder: pathlib.Path) -> bool:
    return not folder.exists() or (folder.is_dir() and (not any(folder.iterdir()) or (folder / "meta" / MARKER).is_file()))


def generate(folder, *, seed: int = 0, clips_per_class_per_fold: int = 8, folds: int = 5,
             progress: bool = False) -> pathlib.Path:
    """Write the synthetic dataset into ``folder`` (replacing a previous one) and return its path.

    Layout: ``folder/audio/*.wav`` (16-bit PCM, mono, SAMPLE_RATE) and
    ``folder/meta/esc50.csv`` with ESC-50's columns, plus ``meta/SYNTHETIC.json``
    (seed, version, sizes). ``len(CLASSES) * folds * clips_per_class_per_fold``
    clips, balanced: every class has ``clips_per_class_per_fold`` clips in
    every fold. Same arguments, same bytes.

    Written into a temporary sibling folder renamed into place at the end, so
    an interrupted run never leaves a folder that looks complete. Refuses to
    replace a non-empty folder that this module did not make.
    """
    _check_args(seed, clips_per_class_per_fold, folds)
    seed, clips_per_class_per_fold, folds = int(seed), int(clips_per_class_per_fold), int(folds)
    folder = pathlib.Path(folder)
    if not _is_ours_or_empty(folder):
        raise FileExistsError(f"soundclr.synthetic: {folder} exists and is not a synthetic dataset made by soundclr "
                              f"(no meta/{MARKER}); remove it or choose another folder for the synthetic data")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        (tmp / "audio").mkdir(parents=True)
        (tmp / "meta").mkdir()
        rows = _rows(clips_per_class_per_fold, folds)
        iterator = rows
        if progress:
            iterator = tqdm(rows, desc="synthetic clips", unit="clip")
        for r in iterator:
            rng = np.random.default_rng(clip_seed(seed, r["target"], r["fold"], r["_index"]))
            sf.write(tmp / "audio" / r["filename"], synthesise(r["target"], rng), SAMPLE_RATE,
                     subtype="PCM_16", format="WAV")
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        (tmp / "meta" / "esc50.csv").write_text(text.getvalue(), encoding="utf-8")
        (tmp / "meta" / MARKER).write_text(
            json.dumps(_marker(seed, clips_per_class_per_fold, folds), indent=1, sort_keys=True) + "\n", encoding="utf-8")
        _swap_into_place(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _swap_into_place(tmp: pathlib.Path, folder: pathlib.Path) -> None:
    """Rename ``tmp`` to ``folder``; an old ``folder`` is moved aside first and removed after."""
    old = None
    if folder.exists():
        old = folder.parent / f".{folder.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            folder.rename(old)
        except FileNotFoundError:   # another process removed it meanwhile
            old = None
    try:
        tmp.rename(folder)
    except OSError:
        # Another process renamed its copy into place between our two renames: keep
        # it (same arguments make the same bytes); the finally in generate() drops ours.
        if not folder.exists():
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def is_complete(folder, *, seed: int = 0, clips_per_class_per_fold: int = 8, folds: int = 5) -> bool:
    """True if ``folder`` holds the dataset these arguments make: marker matches, CSV present, every listed file present."""
    folder = pathlib.Path(folder)
    try:
        marker = json.loads((folder / "meta" / MARKER).read_text(encoding="utf-8"))
        if marker != json.loads(json.dumps(_marker(seed, clips_per_class_per_fold, folds))):
            return False
        with open(folder / "meta" / "esc50.csv", newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            if next(reader) != COLUMNS:
                return False
            names = [row[0] for row in reader if row]
    except (OSError, ValueError, StopIteration):
        return False
    if len(names) != len(CLASSES) * folds * clips_per_class_per_fold:
        return False
    audio = folder / "audio"
    return all((audio / name).is_file() and (audio / name).stat().st_size > 44 for name in names)


def ensure_synthetic(folder, seed: int = 0, *, clips_per_class_per_fold: int = 8, folds: int = 5,
                     progress: bool = False) -> pathlib.Path:
    """Return ``folder``, generating the synthetic dataset there first if it is missing or incomplete.

    Idempotent and fast when complete (nothing is rewritten); regenerates if a
    listed file or the CSV is missing, or the folder was made with another
    seed, size or generator version.
    """
    _check_args(seed, clips_per_class_per_fold, folds)
    seed, clips_per_class_per_fold, folds = int(seed), int(clips_per_class_per_fold), int(folds)
    folder = pathlib.Path(folder)
    if is_complete(folder, seed=seed, clips_per_class_per_fold=clips_per_class_per_fold, folds=folds):
        return folder
    return generate(folder, seed=seed, clips_per_class_per_fold=clips_per_class_per_fold, folds=folds,
                    progress=progress)
