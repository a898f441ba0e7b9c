"""Datasets decoded once into a WaveBank: one int16 tensor of every clip.

Every clip is read with ``soundfile``, averaged to mono, resampled to ``sample_rate`` with a
band-limited (windowed-sinc) resampler, scaled to [-1, 1] and stored as int16
(:mod:`soundclr.audio.io`). The bank is cached on disk at ``<dataset folder>/.soundclr-cache/``
(:mod:`soundclr.data.cache`) and memory-mapped on the next load, so a second load takes seconds
and does not copy the bank into RAM. Example::

    bank = load_bank(preset("quick", dataset="esc50", data_root="data"))
    split = bank.split(test_fold=1, val_fold=2)
    waves, lengths = bank.batch(split.train[:64], device="cuda")   # (64, longest) int16, (64,)
    signal = to_float(waves)                                       # (64, longest) float32 in [-1, 1]
"""
from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import setting_spelling
from .cache import CACHE_DIRNAME, bad_files_message, load_source
from .layouts import (
    DatasetError,
    layout,
    missing_folder,
    read_metadata,
    refetch_advice,
    dataset_folder,
    dataset_rows,
)
from .synthetic import ensure_synthetic


@dataclass
class Split:
    """Index tensors (int64, on the CPU) into a WaveBank."""
    train: torch.Tensor
    val: torch.Tensor | None
    test: torch.Tensor


@dataclass(eq=False)
class WaveBank:
    """Every clip of a dataset, decoded, in one zero-padded int16 tensor.

    ``waves`` is ``(clips, max_samples)`` int16 (``waves / INT16_SCALE`` is the
    signal in [-1, 1]); after ``load_bank`` it is a memory map of the cache
    file, so rows are read from disk only when used. ``lengths``, ``labels``
    and ``folds`` are ``(clips,)`` int64: true length in samples, class
    0..n_classes-1, official fold 1..K.
    """
    waves: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor
    folds: torch.Tensor
    class_names: list[str]
    filenames: list[str]       # relative to the dataset folder
    sample_rate: int
    dataset: str
    folder: str = ""           # the dataset folder it was decoded from (a synthetic draw has its own)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def fold_ids(self) -> list[int]:
        return sorted(set(self.folds.tolist()))

    def __len__(self) -> int:
        return len(self.lengths)

    def __repr__(self) -> str:
        return (f"WaveBank({self.dataset}: {len(self)} clips, {self.n_classes} classes, folds {self.fold_ids}, "
                f"{self.sample_rate} Hz, waves {tuple(self.waves.shape)} on {self.waves.device})")

    def split(self, test_fold: int, val_fold: int | None = None) -> Split:
        """Train / validation / test indices: one fold tests, one optional fold validates, the rest train."""
        valid = self.fold_ids
        for name, fold in (("test_fold", test_fold), ("val_fold", val_fold)):
            if fold is not None and fold not in valid:
                raise DatasetError(f"{name}={fold} is not a fold of {self.dataset}: the valid folds are {valid}")
        if val_fold is not None and val_fold == test_fold:
            raise DatasetError(f"val_fold={val_fold} equals test_fold: choose another of the folds {valid}")
        folds = self.folds.cpu()
        test = folds == test_fold
        val = folds == val_fold if val_fold is not None else torch.zeros_like(test)
        return Split(train=torch.nonzero(~(test | val)).flatten(),
                     val=None if val_fold is None else torch.nonzero(val).flatten(),
                     test=torch.nonzero(test).flatten())

    def batch(self, indices: Any, device: str | torch.device = "cpu", width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips ``indices`` (``(batch,)``) as int16 ``(batch, width)`` waves and ``(batch,)`` lengths on ``device``.

        ``width`` defaults to the longest clip of the batch, so short clips (US8K) do not
        carry the whole bank's padding. Finding it reads a value on the host, so a training
        loop passes it (a Python int computed for the whole epoch at once) instead.
        """
        idx = torch.as_tensor(indices, dtype=torch.long)
        lengths = self.lengths.index_select(0, idx.to(self.lengths.device))
        longest = width if width is not None else (int(lengths.max()) if len(idx) else 0)
        # Slice before gathering: only the rows (and columns) needed are read from the memory map.
        waves = self.waves[:, :longest].index_select(0, idx.to(self.waves.device))
        return waves.to(device, non_blocking=True), lengths.to(device, non_blocking=True)

    def to(self, device: str | torch.device) -> "WaveBank":
        """The whole bank on ``device`` (reads the memory map once when moving off the CPU)."""
        return replace(self, waves=self.waves.to(device), lengths=self.lengths.to(device),
                       labels=self.labels.to(device), folds=self.folds.to(device))

    def subset(self, indices: Any) -> "WaveBank":
        """A bank of clips ``indices`` (labels unchanged); a contiguous ascending range stays a view."""
        idx = torch.as_tensor(indices, dtype=torch.long).cpu()
        n = len(idx)
        if n and bool((idx == torch.arange(int(idx[0]), int(idx[0]) + n)).all()):
            waves = self.waves[int(idx[0]):int(idx[0]) + n]   # a view: nothing is read or copied
        else:
            waves = self.waves.index_select(0, idx.to(self.waves.device))
        lengths = self.lengths.index_select(0, idx.to(self.lengths.device))
        longest = int(lengths.max()) if n else 0
        return replace(self, waves=waves[:, :longest], lengths=lengths,
                       labels=self.labels.index_select(0, idx.to(self.labels.device)),
                       folds=self.folds.index_select(0, idx.to(self.folds.device)),
                       filenames=[self.filenames[i] for i in idx.tolist()])


def load_bank(cfg: Any, *, progress: bool = True, cache_dir: str | os.PathLike | None = None) -> WaveBank:
    """Decode a dataset once (or open its cache) into a WaveBank.

    ``cfg`` is a Config or DataConfig; reads ``dataset``, ``data_root``,
    ``sample_rate`` and ``on_bad_file``. ``cache_dir`` defaults to
    ``<dataset folder>/.soundclr-cache``. Bad files raise DatasetError, or with
    ``on_bad_file="skip"`` are left out and listed in one warning.
    """
    data = getattr(cfg, "data", cfg)
    dataset, sample_rate, on_bad_file = data.dataset, int(data.sample_rate), data.on_bad_file
    if on_bad_file not in ("error", "skip"):
        raise DatasetError(f"on_bad_file={on_bad_file!r} is not valid: choose \"error\" or \"skip\"")
    if sample_rate <= 0:
        raise DatasetError(f"sample_rate={sample_rate} is not valid: it must be positive")
    folder = dataset_folder(data)
    record = layout(dataset)
    if record.generated:
        # The generator owns its folder: it makes it on first use and remakes it if incomplete or outdated
        # (a remade folder has a new fingerprint, so the cache follows).
        ensure_synthetic(folder, seed=data.synthetic_draw)
    if not folder.is_dir():
        raise missing_folder(dataset, folder)
    meta = read_metadata(dataset, folder)
    # ESC-10 needs only its own 400 files: others that are bad do not stop it (they are left out of the shared cache).
    in_dataset = dataset_rows(dataset, meta, folder)
    fatal = in_dataset & (on_bad_file == "error")
    source = record.subset_of or dataset        # ESC-10 decodes ESC-50's folder (one cache for both)
    if cache_dir is None:
        cache, tag = folder / CACHE_DIRNAME, source
    else:   # a cache folder outside the dataset may serve several data roots: tell them apart
        cache = Path(cache_dir).expanduser()
        tag = f"{source}-{hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:8]}"
    array, side = load_source(source, tag, folder, meta, sample_rate, fatal, cache, progress)

    names = {name: i for i, name in enumerate(meta.files)}
    bad = [(name, reason) for name, reason in side["skipped"] if in_dataset[names[name]]]
    if bad and on_bad_file == "error":
        raise DatasetError(bad_files_message(folder, dataset, bad))
    if bad:
        warnings.warn(setting_spelling("on_bad_file", "skip") + ": left out " + bad_files_message(folder, dataset, bad, advice=False),
                      stacklevel=2)
    kept = np.array(side["kept"], np.int64)
    with warnings.catch_warnings():
        # The map is read-only: batch() and subset() copy rows out, so nothing writes to it.
        warnings.filterwarnings("ignore", message=".*not writable.*", category=UserWarning)
        waves = torch.from_numpy(array)[: side["clips"]]
    bank = WaveBank(waves=waves, lengths=torch.tensor(side["lengths"], dtype=torch.long),
                    labels=torch.from_numpy(meta.labels[kept]), folds=torch.from_numpy(meta.folds[kept]),
                    class_names=list(meta.class_names), filenames=[meta.files[i] for i in kept],
                    sample_rate=sample_rate, dataset=source, folder=str(folder.resolve()))
    if record.subset_of:
        # The ESC-10 rows (a prefix of the bank), targets remapped to 0..9 in ascending ESC-50 order.
        bank = bank.subset(torch.nonzero(torch.from_numpy(meta.esc10[kept])).flatten())
        targets = sorted(set(meta.labels[meta.esc10].tolist()))
        remap = torch.full((len(meta.class_names),), -1, dtype=torch.long)
        remap[targets] = torch.arange(len(targets))
        bank = replace(bank, labels=remap[bank.labels], class_names=[meta.class_names[t] for t in targets],
                       dataset=dataset)
    if len(bank) == 0:
        raise DatasetError(f"no usable clip is left in {folder}: every file listed in {folder / record.metadata} "
                           f"was unusable. {refetch_advice(dataset, folder)}.")
    return bank
