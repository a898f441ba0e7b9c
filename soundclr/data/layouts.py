"""LAYDOC
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np


class DatasetError(ValueError):
    """Bad or missing dataset input; the message names the file and what to do."""


@dataclass(frozen=True)
class _Layout:
    title: str                 # the dataset's own name
    folder: str                # folder under data_root
    metadata: str              # metadata CSV, relative to the folder
    columns: tuple[str, ...]   # columns this module reads
    holds: str                 # what the folder holds, for error messages


_ESC = _Layout("ESC-50", "esc50", "meta/esc50.csv", ("filename", "fold", "target", "category"),
               "meta/esc50.csv and audio/")


LAYOUTS = {
    "esc50": _ESC,
    "esc10": _ESC,
    "us8k": _Layout("UrbanSound8K", "us8k", "metadata/UrbanSound8K.csv",
                    ("slice_file_name", "fold", "classID", "class"), "metadata/UrbanSound8K.csv and audio/fold1..10/"),
    "synthetic": replace(_ESC, title="synthetic", folder="synthetic"),
}


@dataclass
class _Meta:
    files: list[str]           # relative to the dataset folder, in bank order
    labels: np.ndarray         # (rows,) int64
    folds: np.ndarray          # (rows,) int64
    esc10: np.ndarray | None   # (rows,) bool, ESC layout only
    class_names: list[str]
    content: bytes             # the metadata file, for the fingerprint


def _read_metadata(dataset: str, folder: Path) -> _Meta:
    layout = LAYOUTS[dataset]
    path = folder / layout.metadata
    if not path.is_file():
        raise DatasetError(f"metadata file {path} not found: the {layout.title} folder {folder} must hold "
                           f"{layout.holds}.{_nested_hint(folder, layout)} {_refetch(dataset, folder)}.")
    content = path.read_bytes()
    try:
        reader = csv.DictReader(io.StringIO(content.decode("utf-8-sig"), newline=""))
    except UnicodeDecodeError:
        raise DatasetError(f"metadata file {path} is not a UTF-8 CSV file. Restore the official "
                           f"{layout.title} metadata file.") from None
    found = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in layout.columns if c not in found]
    if missing:
        raise DatasetError(f"metadata file {path} has the wrong columns: expected {', '.join(layout.columns)}; "
                           f"found {', '.join(found) or 'none'} (missing {', '.join(missing)}). "
                           f"Restore the official {layout.title} metadata file.")
    reader.fieldnames = found
    rows = list(reader)

    def number(row: dict, line: int, column: str) -> int:
        try:
            return int(row[column])
        except (TypeError, ValueError):
            raise DatasetError(f"metadata file {path}, line {line}: column {column!r} should be an integer, "
                               f"found {row[column]!r}. Fix or remove that row.") from None

    def text(row: dict, line: int, column: str) -> str:
        value = (row[column] or "").strip()
        if not value:
            raise DatasetError(f"metadata file {path}, line {line}: column {column!r} is empty. Fix or remove that row.")
        return value

    us8k = dataset == "us8k"
    name_col, target_col, class_col = ("slice_file_name", "classID", "class") if us8k else ("filename", "target", "category")
    files, labels, folds, names = [], [], [], {}
    for line, row in enumerate(rows, start=2):
        fold, target = number(row, line, "fold"), number(row, line, target_col)
        if fold < 1 or target < 0:
            raise DatasetError(f"metadata file {path}, line {line}: fold must be >= 1 and {target_col} >= 0, "
                               f"found fold={fold}, {target_col}={target}. Fix or remove that row.")
        category = text(row, line, class_col)
        if names.setdefault(target, category) != category:
            raise DatasetError(f"metadata file {path}, line {line}: {target_col} {target} is named {category!r} "
                               f"here but {names[target]!r} earlier. Fix the metadata.")
        name = text(row, line, name_col)
        files.append(f"audio/fold{fold}/{name}" if us8k else f"audio/{name}")
        labels.append(target)
        folds.append(fold)
    if not rows:
        raise DatasetError(f"metadata file {path} lists no clips. Restore the official {layout.title} metadata file.")
    if sorted(names) != list(range(len(names))):
        raise DatasetError(f"metadata file {path}: {target_col} should run 0..C-1 without gaps, found {sorted(names)}. "
                           f"Fix the metadata.")
    esc10 = None
    if not us8k and "esc10" in found:
        flags = [(row["esc10"] or "").strip().lower() for row in rows]
        bad = next((i for i, f in enumerate(flags) if f not in ("true", "false")), None)
        if bad is not None:
            raise DatasetError(f"metadata file {path}, line {bad + 2}: column 'esc10' should be True or False, "
                               f"found {rows[bad]['esc10']!r}. Fix the metadata.")
        esc10 = np.array([f == "true" for f in flags])
    meta = _Meta(files, np.array(labels, np.int64), np.array(folds, np.int64), esc10,
                 [names[t] for t in range(len(names))], content)
    if esc10 is not None:
        # ESC-10 clips first, so that ESC-10 is a contiguous slice (a view) of the ESC-50 memory map.
        order = np.argsort(~esc10, kind="stable")
        meta = replace(meta, files=[files[i] for i in order], labels=meta.labels[order],
                       folds=meta.folds[order], esc10=esc10[order])
    return meta


def _nested_hint(folder: Path, layout: _Layout) -> str:
    """The archives extract to ESC-50-master/ or UrbanSound8K/: point at such a nested copy."""
    nested = sorted(folder.glob(f"*/{layout.metadata}")) if folder.is_dir() else []
    if not nested:
        return ""
    inner = nested[0].parents[len(Path(layout.metadata).parts) - 1]
    return f" Found {nested[0]}: move the contents of {inner} up into {folder}."


def dataset_folder(cfg_or_dataset: Any, data_root: str | os.PathLike | None = None) -> Path:
    """Where a dataset lives: ``<data_root>/<name>/`` (ESC-10 lives in the ESC-50 folder).

    ``cfg_or_dataset`` is a Config, a DataConfig or a dataset name; ``data_root``
    defaults to the configuration's (or ``"data"`` for a bare name).
    """
    data = getattr(cfg_or_dataset, "data", cfg_or_dataset)
    name = data if isinstance(data, str) else data.dataset
    if data_root is None:
        data_root = "data" if isinstance(data, str) else data.data_root
    if name not in LAYOUTS:
        raise DatasetError(f"unknown dataset {name!r}: choose one of {', '.join(LAYOUTS)}")
    draw = 0 if isinstance(data, str) else getattr(data, "synthetic_draw", 0)
    return Path(data_root).expanduser() / (LAYOUTS[name].folder + (f"-draw{draw}" if draw else ""))


def _refetch(dataset: str, folder: Path) -> str:
    if dataset == "synthetic":
        return f"Delete {folder} to have it generated again"
    return f"Re-download the dataset (`soundclr data download {LAYOUTS[dataset].folder} --root {folder.parent}`)"


def _missing_folder(dataset: str, folder: Path) -> DatasetError:
    layout = LAYOUTS[dataset]
    part = " (ESC-10 is read from the ESC-50 folder)" if dataset == "esc10" else ""
    return DatasetError(f"{layout.title} not found{part}: the folder {folder} does not exist. Run "
                        f"`soundclr data download {layout.folder} --root {folder.parent}`, or extract the dataset "
                        f"by hand so that {folder} is the folder that holds {layout.holds}")


@dataclass(frozen=True, kw_only=True)
class Source:
    """Where a dataset comes from and what a complete copy of it holds.

    Download: ``url``, saved as ``archive_name``; ``md5`` / ``sha256`` / ``size``
    are checked when given, and ``on_checksum_mismatch`` says whether a
    mismatch is an ``"error"`` or only a ``"warning"`` (for archives that can
    change upstream). ``top_folder`` is the folder inside the archive that
    becomes ``<root>/<name>`` (``""``: the archive's top level itself).

    Contents: ``metadata`` (a CSV, relative to the dataset folder) lists
    ``n_clips`` files in its ``file_column``; each lives in ``audio/`` or, when
    ``fold_folders``, in ``audio/fold<k>/`` with ``k`` from ``fold_column``.
    ``n_folds`` is only used to describe the layout.
    ``exact_files``: ``audio/`` holds no other WAV file. ``sample_rate`` /
    ``channels`` / ``clip_seconds`` (with ``clip_tolerance`` seconds either
    side), when set, are checked on every file's header with
    :func:`soundfile.info` (no decoding).
    """

    name: str
    url: str
    archive_name: str
    top_folder: str
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None
    on_checksum_mismatch: str = "error"
    metadata: str
    file_column: str
    fold_column: str = "fold"
    fold_folders: bool = False
    n_folds: int | None = None
    n_clips: int
    exact_files: bool = False
    sample_rate: int | None = None
    channels: int | None = None
    clip_seconds: float | None = None
    clip_tolerance: float = 0.0

    def __post_init__(self) -> None:
        if self.on_checksum_mismatch not in ("error", "warning"):
            raise ValueError(f"Source {self.name!r}: on_checksum_mismatch={self.on_checksum_mismatch!r} "
                             "is not valid: choose 'error' or 'warning'")

    def describe(self) -> str:
        """What a complete copy holds, in words (used in error messages)."""
        if not self.fold_folders:
            audio = "audio/"
        elif self.n_folds:
            audio = f"audio/fold1/ ... audio/fold{self.n_folds}/"
        else:
            audio = "audio/fold<k>/ (k from its fold column)"
        fmt = []
        if self.clip_seconds is not None:
            fmt.append(f"{self.clip_seconds:g} s")
        if self.sample_rate is not None:
            fmt.append(f"{self.sample_rate / 1000:g} kHz")
        if self.channels is not None:
            fmt.append({1: "mono", 2: "stereo"}.get(self.channels, f"{self.channels} channels"))
        each = f", each {', '.join(fmt)}" if fmt else ""
        only = "exactly " if self.exact_files else ""
        return f"{self.metadata} and, in {audio}, {only}the {self.n_clips} audio files it lists{each}"


SOURCES: dict[str, Source] = {
    "esc50": Source(
        name="esc50",
        url="https://github.com/karolpiczak/ESC-50/archive/master.zip",
        archive_name="ESC-50-master.zip",
        top_folder="ESC-50-master",
        # One copy of the branch archive; the branch can move, so only a warning.
        sha256="805afc618aff80eff0641d51311647871fead5807da68bb18e43a27db47a79ce",
        size=645_695_005,
        on_checksum_mismatch="warning",
        metadata="meta/esc50.csv",
        file_column="filename",
        n_clips=2000,
        exact_files=True,
        sample_rate=44100,
        channels=1,
        clip_seconds=5.0,
    ),
    "us8k": Source(
        name="us8k",
        # Zenodo record 1203745.
        url="https://zenodo.org/records/1203745/files/UrbanSound8K.tar.gz",
        archive_name="UrbanSound8K.tar.gz",
        top_folder="UrbanSound8K",
        md5="9aa69802bbf37fb986f71ec1483a196e",
        metadata="metadata/UrbanSound8K.csv",
        file_column="slice_file_name",
        fold_folders=True,
        n_folds=10,
        n_clips=8732,
    ),
}


# ESC-10 is the subset of ESC-50 flagged in its metadata: it lives in the esc50 folder.
_ALIASES = {"esc10": "esc50"}
