"""Checking a download: the archive's checksum and size, and a dataset folder's contents (every file
the metadata lists, their format from the headers), with errors that name what is wrong.
"""
from __future__ import annotations

import csv
import hashlib
import os
import pathlib
import warnings

import soundfile

from ..datasets import names as dataset_names
from .layouts import Source, source_of

CHUNK = 1 << 20


_PROBLEMS_SHOWN = 10


class DownloadError(Exception):
    """A dataset could not be downloaded, unpacked or verified."""


def verify_contents(name_or_source: str | Source, folder: str | os.PathLike) -> None:
    """Check that ``folder`` holds a complete copy of a dataset; raise DownloadError naming what is wrong.

    Reads the metadata CSV, checks its row count and that every file it lists
    is present (under ``audio/`` or ``audio/fold<k>/``); for sources that fix
    the format (ESC-50: 5 s, 44.1 kHz, mono), reads each file's header with
    :func:`soundfile.info` (no decoding) and checks rate, channels and
    duration; for ``exact_files`` sources, that ``audio/`` holds no other WAV.
    """
    src = name_or_source if isinstance(name_or_source, Source) else source_for(name_or_source)
    folder = pathlib.Path(folder)
    meta = folder / src.metadata
    if not meta.is_file():
        raise DownloadError(f"{meta} is missing: expected {folder} to hold {src.describe()}")
    try:
        with open(meta, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DownloadError(f"{meta} could not be read as a CSV file ({err}): expected the dataset's metadata") from None
    needed = [src.file_column] + ([src.fold_column] if src.fold_folders else [])
    if not rows or any(c not in columns for c in needed):
        raise DownloadError(f"{meta} has columns {columns} and {len(rows)} rows: expected columns "
                            f"{needed} and {src.n_clips} rows")

    problems: list[str] = []
    if len(rows) != src.n_clips:
        problems.append(f"{src.metadata} lists {len(rows)} clips, expected {src.n_clips}")
    audio = folder / "audio"
    listed: set[pathlib.Path] = set()
    missing: list[str] = []
    for row in rows:
        sub = pathlib.Path(f"fold{row[src.fold_column].strip()}") if src.fold_folders else pathlib.Path()
        rel = sub / row[src.file_column].strip()
        path = audio / rel
        if path in listed:
            problems.append(f"{src.metadata} lists audio/{rel.as_posix()} twice")
            continue
        listed.add(path)
        if not path.is_file():
            missing.append(f"audio/{rel.as_posix()}")
    if missing:
        problems.append(f"{len(missing)} listed audio file(s) missing: {_some(missing)}")
    if src.exact_files and audio.is_dir():
        extra = sorted(p.relative_to(folder).as_posix() for p in audio.rglob("*")
                       if p.suffix.lower() == ".wav" and p not in listed)
        if extra:
            problems.append(f"{len(extra)} WAV file(s) in audio/ not listed in {src.metadata}: {_some(extra)}")
    if src.sample_rate is not None or src.channels is not None or src.clip_seconds is not None:
        problems.extend(_check_formats(src, sorted(p for p in listed if p.is_file()), folder))
    if problems:
        raise DownloadError(f"{folder} does not hold a complete copy of {src.name} ({src.describe()}): "
                            + "; ".join(problems))


def source_for(name: str) -> Source:
    src = source_of(name)
    if src is None:
        valid = sorted(n for n in dataset_names() if source_of(n) is not None)
        raise DownloadError(f"unknown dataset {name!r}: choose one of {', '.join(valid)} "
                            "(or pass source=Source(...) for another archive)")
    return src


def _some(items: list[str]) -> str:
    shown = ", ".join(items[:_PROBLEMS_SHOWN])
    return shown + (f", ... ({len(items) - _PROBLEMS_SHOWN} more)" if len(items) > _PROBLEMS_SHOWN else "")


def _check_formats(src: Source, paths: list[pathlib.Path], folder: pathlib.Path) -> list[str]:

    bad: list[str] = []
    for path in paths:
        rel = path.relative_to(folder).as_posix()
        try:
            info = soundfile.info(str(path))
        except Exception as err:  # soundfile raises its own error types for unreadable headers
            bad.append(f"{rel} cannot be read ({err})")
            continue
        found = []
        if src.sample_rate is not None and info.samplerate != src.sample_rate:
            found.append(f"rate {info.samplerate} Hz (expected {src.sample_rate})")
        if src.channels is not None and info.channels != src.channels:
            found.append(f"{info.channels} channels (expected {src.channels})")
        if src.clip_seconds is not None:
            # Judge length at the file's own rate, so a wrong rate is not also reported as a wrong length.
            want = round(src.clip_seconds * info.samplerate)
            if abs(info.frames - want) > round(src.clip_tolerance * info.samplerate):
                found.append(f"{info.frames} samples = {info.frames / info.samplerate:.3f} s "
                             f"(expected {want} = {src.clip_seconds:g} s)")
        if found:
            bad.append(f"{rel}: {', '.join(found)}")
    return [f"{len(bad)} audio file(s) have the wrong format: {_some(bad)}"] if bad else []


def _digests(path: pathlib.Path, src: Source) -> dict[str, str]:
    hashes = {k: hashlib.new(k) for k, want in (("md5", src.md5), ("sha256", src.sha256)) if want}
    if hashes:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                for h in hashes.values():
                    h.update(chunk)
    return {k: h.hexdigest() for k, h in hashes.items()}


def check_archive(src: Source, path: pathlib.Path, *, delete_on_error: bool) -> None:
    """Compare size and checksums with the source's; error or warn as the source says."""
    wrong = []
    size = path.stat().st_size
    if src.size is not None and size != src.size:
        wrong.append(f"size {size} bytes (expected {src.size})")
    for kind, got in _digests(path, src).items():
        want = getattr(src, kind).lower()
        if got != want:
            wrong.append(f"{'MD5' if kind == 'md5' else 'SHA-256'} {got} (expected {want})")
    if not wrong:
        return
    if src.on_checksum_mismatch == "warning":
        warnings.warn(
            f"{path.name} from {src.url} does not match the recorded copy: {'; '.join(wrong)}. "
            "This archive is built from a repository branch and can change upstream, so this is only a "
            "warning: its unpacked contents are verified strictly instead.", UserWarning, stacklevel=3)
        return
    if delete_on_error:
        path.unlink(missing_ok=True)
        what = f"The download from {src.url} is corrupt or not the expected file; it was deleted, so " \
               "calling download() again starts afresh."
    else:
        what = f"Delete or replace {path} (it was left in place) and call download() again."
    raise DownloadError(f"checksum mismatch for {path.name}: {'; '.join(wrong)}. Nothing was unpacked. {what}")
