"""The datasets: one record per dataset, the one place their facts live.

A :class:`Dataset` holds what the rest of the library asks of a dataset: its title, folds, clip length,
learning rate (the paper's per-dataset values), where it lives under ``data_root`` and the layout of its
folder (the metadata CSV and the names of its columns), the clips per fold (the cost model), whether
the paper published results on it, and where it is downloaded from (:class:`Source`, with checksums).
The configuration's defaults, the loader (:mod:`soundclr.data`), the download, the cost model and the
pages read them from here.

Registered here: the paper's ESC-50, ESC-10 (the flagged rows of the ESC-50 folder) and UrbanSound8K,
and the embedded synthetic set (the offline default). A dataset of your own is

- a folder in ESC-50's layout, with no code: ``meta/<any>.csv`` with the columns ``filename``, ``fold``
  (1..K), ``target`` (0..C-1) and ``category``, and the clips in ``audio/``. ``--dataset-folder DIR``
  (``soundclr train``, ``reproduce``, ...) or :func:`register_folder` registers it under the folder's
  name, with K folds from its CSV and the clip length of its longest clip;
- or one record in a plugin file (``--plugin FILE``) that calls :func:`register`, for another layout.

A registered folder is named in the environment (:data:`FOLDER_ENV`), so the processes a command starts
(training workers, notebook kernels, SLURM jobs) register it too.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import soundfile

from .schemes import names as scheme_names

FOLDER_ENV = "SOUNDCLR_DATASET_FOLDERS"    # os.pathsep-separated dataset folders registered by --dataset-folder


@dataclass(frozen=True)
class Columns:
    """The metadata CSV's columns: the clip's file, its fold (1..K), its class (0..C-1) and the class's name."""
    file: str = "filename"
    fold: str = "fold"
    target: str = "target"
    category: str = "category"

    def names(self) -> tuple[str, str, str, str]:
        return (self.file, self.fold, self.target, self.category)


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


@dataclass(frozen=True, kw_only=True)
class Dataset:
    """A dataset.

    ``name``: its identifier (``--dataset``, run folders). ``title``: its name in the pages. ``n_folds``: the
    official cross-validation folds. ``clip_seconds``: every clip is padded or cropped to this length
    (``clip_seconds = None`` in a configuration). ``lr``: the learning rate when a configuration leaves it
    None (the paper: 5e-4 on ESC, 1e-4 on UrbanSound8K). ``folder``: where it lives, under ``data_root``
    (an absolute path: wherever it is). ``metadata``: its CSV, relative to the folder; ``columns``: the
    CSV's columns; ``fold_folders``: the clips are in ``audio/fold<k>/`` (UrbanSound8K) rather than
    ``audio/``. ``flag_column``: an optional True/False column whose True rows form a subset dataset and
    come first in the decoded bank (ESC-50's ``esc10``); ``subset_of``: this dataset is those rows of
    another dataset's folder. ``fold_sizes``: clips per fold (the cost model). ``paper``: the paper
    published results on it. ``generated``: made by :mod:`soundclr.data.synthetic` on first use.
    ``download``: where a copy comes from. ``holds``: what its folder holds, in words (error messages).
    ``source``: where the record came from (None: built in; a folder's or plugin's path otherwise): a
    dataset of your own adds its metadata's hash to its runs' identity.
    """
    name: str
    title: str
    n_folds: int
    clip_seconds: float
    lr: float = 5e-4
    folder: str = ""
    metadata: str = "meta/esc50.csv"
    columns: Columns = field(default_factory=Columns)
    fold_folders: bool = False
    flag_column: str | None = None
    subset_of: str | None = None
    fold_sizes: tuple[int, ...] = ()
    paper: bool = False
    generated: bool = False
    download: Source | None = None
    holds: str = ""
    source: str | None = None

    def __post_init__(self) -> None:
        if not self.folder:
            object.__setattr__(self, "folder", self.name)
        if not self.holds:
            audio = "audio/fold1..{}/".format(self.n_folds) if self.fold_folders else "audio/"
            object.__setattr__(self, "holds", f"{self.metadata} and {audio}")


_ESC50_SOURCE = Source(
    name="esc50",
    url="https://github.com/karolpiczak/ESC-50/archive/master.zip",
    archive_name="ESC-50-master.zip",
    top_folder="ESC-50-master",
    # One copy of the branch archive; the branch can move, so only a warning.
    sha256="805afc618aff80eff0641d51311647871fead5807da68bb18e43a27db47a79ce",
    size=645_695_005,
    on_checksum_mismatch="warning",
    metadata="meta/esc50.csv",                # what the archive holds is the layout the loader reads
    file_column="filename",
    n_clips=2000,
    exact_files=True,
    sample_rate=44100,
    channels=1,
    clip_seconds=5.0,
)
_US8K_SOURCE = Source(
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
)

_REGISTRY: dict[str, Dataset] = {}


def register(dataset: Dataset, *, replace: bool = False) -> Dataset:
    """Add ``dataset`` to the registry (a plugin file calls this at import). A name taken by another dataset is an
    error unless ``replace``; the built-in four cannot be replaced."""
    if not isinstance(dataset, Dataset):
        raise TypeError(f"register() takes a soundclr.datasets.Dataset, not {type(dataset).__name__}")
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", dataset.name):
        raise ValueError(f"dataset name {dataset.name!r} is not valid: use lowercase letters, digits, _ and - (it names "
                         "folders), starting with a letter")
    if dataset.n_folds < 2:
        raise ValueError(f"dataset {dataset.name!r}: n_folds={dataset.n_folds} is not valid: cross-validation needs at "
                         "least 2 folds")
    if not dataset.clip_seconds > 0:
        raise ValueError(f"dataset {dataset.name!r}: clip_seconds={dataset.clip_seconds} is not valid: it must be > 0")
    if dataset.subset_of is not None and dataset.subset_of not in _REGISTRY:
        raise ValueError(f"dataset {dataset.name!r}: subset_of={dataset.subset_of!r} is not a registered dataset")
    old = _REGISTRY.get(dataset.name)
    if old is not None and old != dataset and (old.source is None or not replace):
        raise ValueError(f"dataset {dataset.name!r} is registered already (from {old.source or 'soundclr'}): choose "
                         "another name" + ("" if old.source is None else " or pass replace=True"))
    _REGISTRY[dataset.name] = dataset
    return dataset


register(Dataset(name="esc50", title="ESC-50", n_folds=5, clip_seconds=5.0, lr=5e-4, flag_column="esc10",
                 fold_sizes=(400,) * 5, paper=True, download=_ESC50_SOURCE))
register(Dataset(name="esc10", title="ESC-10", n_folds=5, clip_seconds=5.0, lr=5e-4, folder="esc50", flag_column="esc10",
                 subset_of="esc50", fold_sizes=(80,) * 5, paper=True, holds="meta/esc50.csv and audio/"))
register(Dataset(name="us8k", title="UrbanSound8K", n_folds=10, clip_seconds=4.0, lr=1e-4,
                 metadata="metadata/UrbanSound8K.csv", columns=Columns("slice_file_name", "fold", "classID", "class"),
                 fold_folders=True, fold_sizes=(873, 888, 925, 990, 936, 823, 838, 806, 816, 837), paper=True,
                 download=_US8K_SOURCE))
register(Dataset(name="synthetic", title="synthetic", n_folds=5, clip_seconds=2.5, lr=5e-4, flag_column="esc10",
                 fold_sizes=(80,) * 5, generated=True))

PAPER_DATASETS = tuple(n for n, d in _REGISTRY.items() if d.paper)     # esc50, esc10, us8k: results published


# -- a folder of your own in ESC-50's layout -----------------------------------------------------------
def register_folder(path: str | os.PathLike, *, name: str | None = None) -> Dataset:
    """Register the folder ``path`` in ESC-50's layout as a dataset named after it (or ``name``): its metadata is
    the one CSV in ``meta/`` (columns filename, fold, target, category; an ``esc10`` column is not needed), its
    clips are in ``audio/``. Its folds are those of the CSV (1..K, every one used), its clip length that of its
    longest clip (read from the files' headers), its learning rate ESC-50's. The folder is named in the
    environment for the processes this one starts. Returns the record."""
    folder = Path(path).expanduser().resolve()
    metas = sorted((folder / "meta").glob("*.csv")) if folder.is_dir() else []
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset folder {path}: no such folder (give a folder in ESC-50's layout: meta/<name>.csv "
                                "with the columns filename, fold, target, category, and the clips in audio/)")
    if len(metas) != 1:
        raise ValueError(f"dataset folder {folder}: expected one metadata CSV in {folder / 'meta'}, found "
                         f"{', '.join(m.name for m in metas) or 'none'} (ESC-50's layout: meta/<name>.csv and audio/)")
    content = metas[0].read_bytes()
    rows = _csv_rows(metas[0], content)
    try:
        folds = sorted({int(r["fold"]) for r in rows})
    except (TypeError, ValueError):
        raise ValueError(f"metadata file {metas[0]}: column 'fold' should hold integers 1..K") from None
    if folds != list(range(1, len(folds) + 1)) or len(folds) < 2:
        raise ValueError(f"metadata file {metas[0]}: folds should run 1..K with K >= 2 and none empty, found "
                         f"{folds}. Fix the metadata.")
    sizes = tuple(sum(1 for r in rows if int(r["fold"]) == f) for f in folds)
    key = (name or re.sub(r"[^a-z0-9_-]+", "-", folder.name.lower()).strip("-_")) or "mine"
    if not key[0].isalpha():
        key = f"d-{key}"
    record = Dataset(name=key, title=name or folder.name, n_folds=len(folds), clip_seconds=_longest_clip(folder, rows),
                     folder=str(folder), metadata=f"meta/{metas[0].name}", flag_column="esc10", fold_sizes=sizes,
                     source=f"{metas[0].name}@{hashlib.sha256(content).hexdigest()[:12]}")
    register(record, replace=True)
    paths = _env_folders()
    if str(folder) not in paths:
        os.environ[FOLDER_ENV] = os.pathsep.join([*paths, str(folder)])
    return record


def _csv_rows(path: Path, content: bytes) -> list[dict]:
    try:
        reader = csv.DictReader(io.StringIO(content.decode("utf-8-sig"), newline=""))
    except UnicodeDecodeError:
        raise ValueError(f"metadata file {path} is not a UTF-8 CSV file") from None
    found = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in Columns().names() if c not in found]
    if missing:
        raise ValueError(f"metadata file {path} has the wrong columns for ESC-50's layout: expected filename, fold, "
                         f"target, category; found {', '.join(found) or 'none'} (missing {', '.join(missing)})")
    reader.fieldnames = found
    rows = list(reader)
    if not rows:
        raise ValueError(f"metadata file {path} lists no clips")
    return rows


def _longest_clip(folder: Path, rows: list[dict]) -> float:
    """The longest clip's duration in seconds (to the millisecond above), from the files' headers."""
    longest = 0.0
    for r in rows:
        path = folder / "audio" / r["filename"].strip()
        try:
            info = soundfile.info(str(path))
        except Exception as err:         # noqa: BLE001 - soundfile raises its own types for unreadable files
            raise ValueError(f"dataset folder {folder}: cannot read {path} ({type(err).__name__}: {err}); every clip its "
                             "metadata lists must be an audio file in audio/") from None
        longest = max(longest, info.frames / info.samplerate)
    return max(0.001, -(-round(longest * 1e6) // 1000) / 1000)


def _env_folders() -> list[str]:
    return [x for x in os.environ.get(FOLDER_ENV, "").split(os.pathsep) if x]


def _load_from_env() -> None:
    for path in _env_folders():
        if not any(d.folder == path for d in _REGISTRY.values()):
            register_folder(path)


# -- lookups --------------------------------------------------------------------------------------
def get(name: str) -> Dataset:
    """The dataset ``name``; an unknown name is looked up again after the environment's dataset folders and
    plugins are registered, then is a ValueError naming the datasets and how to add one."""
    if name not in _REGISTRY:
        _load_from_env()
        scheme_names()                 # loads the environment's plugins: a plugin file may register datasets too
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"dataset {name!r} is not registered: the datasets are {', '.join(names())} (a folder of your "
                         "own in ESC-50's layout: --dataset-folder DIR)") from None


def names() -> tuple[str, ...]:
    """Every registered dataset: the paper's three, the synthetic set, then yours."""
    _load_from_env()
    return tuple(_REGISTRY)


def title_of(name: str) -> str:
    """The dataset's name in the pages (an unregistered name is shown as it is)."""
    if name not in _REGISTRY:
        _load_from_env()
    return _REGISTRY[name].title if name in _REGISTRY else name
