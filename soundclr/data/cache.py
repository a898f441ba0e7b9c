"""The decoded-audio cache: every clip of a dataset decoded once into a memory-mapped ``.npy``.

Cache files are named ``<tag>-<rate>hz-v<FORMAT_VERSION>-<fingerprint>.npy`` with a JSON sidecar
(kept rows, lengths, skipped files); the fingerprint changes with the metadata or any audio file
(name, size, mtime), so a changed dataset is decoded again. The cache is written like the results
(:mod:`soundclr.files`: temporary names, then renamed); a cache file found broken is named in a
warning and rebuilt from the audio. Bad files stop the decoding with a message listing them, or
with ``on_bad_file="skip"`` are left out and listed.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from tqdm import tqdm

from ..audio.io import BadFile, decode_file, probe_file, to_int16
from ..config import INTERFACE_ENV, setting_spelling
from ..files import atomic_path, atomic_write_json, is_temporary
from .layouts import DatasetError, Meta, layout, refetch_advice

# Bump when the decoding changes what is stored, so old caches are rebuilt.
FORMAT_VERSION = 1


CACHE_DIRNAME = ".soundclr-cache"


DECODE_THREADS = 4


def _fingerprint(folder: Path, meta: Meta) -> str:
    """Changes when the metadata or any listed audio file (name, size, mtime) changes."""
    digest = hashlib.sha256(meta.content)
    for name in meta.files:
        try:
            st = os.stat(folder / name)
            digest.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{name}\0missing\n".encode())
    return digest.hexdigest()


class _CorruptCache(Exception):
    """A cache file that exists but cannot be used: ``args`` are (path, what is wrong with it)."""


_NPY_MAGIC = b"\x93NUMPY"


def _sidecar_problem(side: Any, files: list[str]) -> str | None:
    """What makes a parsed sidecar unusable with the metadata's ``files``, or None if it is sound."""
    if not isinstance(side, dict):
        return f"holds a JSON {type(side).__name__}, not an object"

    def ints(value, lo: int, hi: int) -> bool:
        return isinstance(value, list) and all(type(v) is int and lo <= v < hi for v in value)
    missing = [k for k in ("format_version", "fingerprint", "sample_rate", "shape", "clips", "kept", "lengths",
                           "skipped") if k not in side]
    if missing:
        return f"lacks the entries {', '.join(missing)}"
    shape, clips, kept = side["shape"], side["clips"], side["kept"]
    if not (ints(shape, 1, 2**62) and len(shape) == 2):
        return f"has an invalid array shape {shape!r}"
    if type(clips) is not int or not 0 <= clips <= shape[0]:
        return f"has an invalid clip count {clips!r} (the array has {shape[0]} rows)"
    if not ints(kept, 0, len(files)) or len(kept) != clips or any(a >= b for a, b in zip(kept, kept[1:])):
        return f"has an invalid list of kept clips (expected {clips} ascending rows of the metadata's {len(files)})"
    if not ints(side["lengths"], 0, shape[1] + 1) or len(side["lengths"]) != clips:
        return f"has an invalid list of clip lengths (expected {clips} lengths of at most {shape[1]} samples)"
    names = set(files)
    skipped = side["skipped"]
    if not (isinstance(skipped, list) and all(isinstance(s, list) and len(s) == 2 and s[0] in names
                                              and isinstance(s[1], str) for s in skipped)):
        return "has an invalid list of skipped files"
    return None


def _open_cache(cache_dir: Path, key: str, fingerprint: str, sample_rate: int,
                files: list[str]) -> tuple[np.ndarray, dict] | None:
    """The memory-mapped array and its sidecar, or None if there is no cache for this key yet.

    A sidecar is written only after its array is complete, so a missing
    sidecar means no cache (or a crash before it was finished). A cache whose
    files exist but are unreadable or inconsistent raises _CorruptCache.
    """
    side_path, npy = cache_dir / f"{key}.json", cache_dir / f"{key}.npy"
    try:
        raw = side_path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise _CorruptCache(side_path, f"cannot be read ({err.strerror or err})") from None
    try:
        side = json.loads(raw)
    except ValueError as err:
        what = "is empty" if not raw.strip() else f"is not valid JSON ({getattr(err, 'msg', err)})"
        raise _CorruptCache(side_path, what) from None
    problem = _sidecar_problem(side, files)
    if problem:
        raise _CorruptCache(side_path, problem)
    # The name holds the format version, rate and fingerprint: a sidecar that disagrees with it was damaged.
    if (side["format_version"], side["fingerprint"], side["sample_rate"]) != (FORMAT_VERSION, fingerprint, sample_rate):
        raise _CorruptCache(side_path, "describes other data than its name says (format version, fingerprint "
                                       "or sample rate)")
    try:
        with open(npy, "rb") as f:
            if f.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
                raise _CorruptCache(npy, "is not a NumPy .npy file (its header is missing or garbled)")
        array = np.load(npy, mmap_mode="r")
    except FileNotFoundError:
        raise _CorruptCache(npy, f"is missing, though its sidecar {side_path.name} is there") from None
    except (OSError, ValueError, EOFError) as err:
        raise _CorruptCache(npy, f"cannot be read ({err}); it was probably cut short") from None
    if array.dtype != np.int16 or list(array.shape) != side["shape"]:
        raise _CorruptCache(npy, f"holds a {array.dtype} array of shape {list(array.shape)}, its sidecar "
                                 f"{side_path.name} says int16 {side['shape']}")
    return array, side


def _tidy(cache_dir: Path, stem: str, keep: str) -> None:
    """Remove what is left of older caches of the same dataset and rate, and temporaries abandoned by a crash.

    Temporaries are named by :mod:`soundclr.files` (``.<name>.<8 hex>.tmp``);
    one less than a day old may belong to a process still decoding, so it stays.
    """
    for path in cache_dir.iterdir():
        try:
            if is_temporary(path.name):
                if time.time() - path.stat().st_mtime > 86400:   # a live writer touches its file
                    path.unlink()
            elif path.name.startswith(stem) and path.name not in (f"{keep}.npy", f"{keep}.json"):
                path.unlink()
        except OSError:
            pass


def _ordered(pool: ThreadPoolExecutor, fn, items: Iterable, window: int):
    """``pool.submit(fn, item)`` futures in order, at most ``window`` in flight (bounded memory)."""
    items = iter(items)
    pending = deque(pool.submit(fn, item) for item in itertools.islice(items, window))
    while pending:
        future = pending.popleft()
        for item in itertools.islice(items, 1):
            pending.append(pool.submit(fn, item))
        yield future


def bad_files_message(folder: Path, dataset: str, bad: list[tuple[str, str]], advice: bool = True) -> str:
    record = layout(dataset)
    lines = [f"  {folder / name}: {reason}" for name, reason in bad[:20]]
    if len(bad) > 20:
        lines.append(f"  ... and {len(bad) - 20} more")
    listing = f"{len(bad)} unusable audio file(s) in {folder}:\n" + "\n".join(lines)
    if not advice:
        return listing
    how = ("run again with " if os.environ.get(INTERFACE_ENV) == "cli" else "pass ") + setting_spelling("on_bad_file", "skip")
    return (f"{listing}\n{refetch_advice(dataset, folder)}, remove these rows from {folder / record.metadata}, "
            f"or {how} to leave them out.")


def _decode_into(npy: Path, folder: Path, meta: Meta, sample_rate: int, fatal: np.ndarray,
                 dataset: str, progress: bool) -> dict:
    """Decode every clip into a new .npy at ``npy``; return the sidecar (kept rows, lengths, skipped files).

    A bad file on a ``fatal`` row raises DatasetError; any other is recorded
    in ``skipped``. Rows are written in metadata order, so skipped files only
    leave unused rows at the end of the array.
    """

    paths = [folder / name for name in meta.files]
    skipped: list[tuple[int, str]] = []

    def probe(path: Path):
        try:
            return probe_file(path)
        except BadFile as err:
            return err

    workers = min(DECODE_THREADS, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        probes = list(pool.map(probe, paths))
        bad = [(i, str(p)) for i, p in enumerate(probes) if isinstance(p, BadFile)]
        if any(fatal[i] for i, _ in bad):
            raise DatasetError(bad_files_message(folder, dataset, [(meta.files[i], r) for i, r in bad if fatal[i]]))
        skipped += bad
        rows = [i for i, p in enumerate(probes) if not isinstance(p, BadFile)]
        # Output length of the resampler: ceil(frames * new / old).
        width = max((-(-frames * sample_rate // rate) for frames, rate in (probes[i] for i in rows)), default=1)
        array = np.lib.format.open_memmap(npy, mode="w+", dtype=np.int16, shape=(max(len(rows), 1), width))
        kept, lengths = [], []
        bar = tqdm(total=len(rows), desc=f"decoding {dataset} at {sample_rate} Hz", unit="clip", disable=not progress)
        try:
            for i, future in zip(rows, _ordered(pool, lambda i: decode_file(paths[i], sample_rate), rows, 2 * workers)):
                try:
                    wave = to_int16(future.result())
                except BadFile as err:
                    if fatal[i]:
                        raise DatasetError(bad_files_message(folder, dataset, [(meta.files[i], str(err))])) from None
                    skipped.append((i, str(err)))
                    continue
                n = min(len(wave), width)
                array[len(kept), :n] = wave[:n]
                kept.append(i)
                lengths.append(n)
                bar.update()
        finally:
            bar.close()
        array.flush()
        del array
    return {"kept": kept, "lengths": lengths, "clips": len(kept), "shape": [max(len(rows), 1), width],
            "skipped": [[meta.files[i], reason] for i, reason in sorted(skipped)]}


def load_source(source: str, tag: str, folder: Path, meta: Meta, sample_rate: int, fatal: np.ndarray,
                 cache_dir: Path, progress: bool) -> tuple[np.ndarray, dict]:
    """The decoded array (memory-mapped) and its sidecar, from the cache or by decoding once.

    Cache files are named ``<tag>-<rate>hz-v<FORMAT_VERSION>-<fingerprint>.npy/.json``.
    """
    fingerprint = _fingerprint(folder, meta)
    stem = f"{tag}-{sample_rate}hz-"
    key = f"{stem}v{FORMAT_VERSION}-{fingerprint[:16]}"
    try:
        cached = _open_cache(cache_dir, key, fingerprint, sample_rate, meta.files)
    except _CorruptCache as err:
        path, problem = err.args
        warnings.warn(f"the decoded-audio cache file {path} {problem}. The cache is rebuilt from the audio files "
                      f"in {folder} (every clip is decoded once more) and the broken file replaced.", stacklevel=3)
        cached = None
    if cached is not None:
        return cached
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        npy, side_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
        # The sidecar goes first and comes back last, so no moment pairs it with a half-written array.
        side_path.unlink(missing_ok=True)
    except OSError as err:
        raise DatasetError(f"cannot write the decoded-audio cache in {cache_dir} ({err}): make that folder "
                           f"writable, or pass cache_dir= to load_bank to keep the cache elsewhere.") from None
    with atomic_path(npy) as tmp:
        side = _decode_into(tmp, folder, meta, sample_rate, fatal, source, progress)
    side.update(format_version=FORMAT_VERSION, fingerprint=fingerprint, sample_rate=sample_rate,
                dataset=source, created=time.strftime("%Y-%m-%dT%H:%M:%S"))
    atomic_write_json(side_path, side)
    _tidy(cache_dir, stem, keep=key)
    try:
        cached = _open_cache(cache_dir, key, fingerprint, sample_rate, meta.files)
    except _CorruptCache as err:
        cached, problem = None, f"{err.args[0]} {err.args[1]}"
    else:
        problem = "its sidecar is missing"
    if cached is None:
        raise DatasetError(f"the cache just written in {cache_dir} cannot be read back ({problem}): "
                           f"remove {cache_dir} and retry.")
    return cached
