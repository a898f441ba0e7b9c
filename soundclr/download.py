"""Download, check and unpack the real datasets (ESC-50 / ESC-10 and UrbanSound8K).

``download("esc50", "data")`` leaves ``data/esc50/`` holding ``meta/esc50.csv``
and ``audio/``; ``download("us8k", "data")`` leaves ``data/us8k/`` holding
``metadata/UrbanSound8K.csv`` and ``audio/fold1`` ... ``audio/fold10``. That is
where :mod:`soundclr.data` looks (``<data_root>/<name>``; ESC-10 reads the
ESC-50 folder, so ``download("esc10", ...)`` fetches ESC-50).

What happens, in order, and why:

1. A destination that already holds a verified copy is returned at once, with
   no network access; one that exists but does not verify is an error, and is
   never deleted (it may be a user's own data).
2. The archive is streamed to ``<root>/.downloads/<archive>.part`` with a tqdm
   bar. A ``.part`` left by an interrupted run is continued with an HTTP Range
   request; a server that ignores Range (answers 200) is read from zero; a 416
   answer means the part is already whole (or unusable, then it restarts). A
   connection dropped mid-transfer is resumed a few times before giving up
   (the ``.part`` is kept for the next call).
3. Checksums are checked before anything is unpacked. UrbanSound8K's MD5 comes
   from its Zenodo record and a mismatch is an error (the ``.part`` is
   deleted). ESC-50 is a GitHub branch archive, which can change when the
   repository does, so a mismatch there is a warning and the unpacked contents
   are checked strictly instead.
4. The archive is unpacked into a temporary folder inside ``root`` through
   the standard library's ``"data"`` extraction filter (``tarfile``, PEP 706;
   zip entries pass the same filter): a member that would land outside that
   folder (``..``, or a path through a link that leads out), a link pointing
   outside it or to an absolute path, a device or FIFO, and any absolute
   member name are refused, naming the archive and the member. The
   contents are verified (see :func:`verify_contents`) and only then renamed
   into place, so a failure never leaves a half-unpacked dataset behind.

Without a network connection the call fails at once with a message saying
where to put a copy fetched elsewhere.
"""
from __future__ import annotations

import csv
import hashlib
import http.client
import os
import pathlib
import re
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass

__all__ = ["Source", "SOURCES", "DownloadError", "download", "verify_contents"]

_CHUNK = 1 << 20
_PROBLEMS_SHOWN = 10


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


class DownloadError(Exception):
    """A dataset could not be downloaded, unpacked or verified."""


# --------------------------------------------------------------------------
# public API


def download(name: str, root: str | os.PathLike, *, source: Source | None = None, progress: bool = True,
             timeout: float = 10.0, keep_archive: bool = False, retries: int = 3) -> pathlib.Path:
    """Download, verify and unpack a dataset into ``<root>/<source.name>``; return that folder.

    Args:
        name: ``"esc50"``, ``"esc10"`` (the ESC-50 folder) or ``"us8k"``.
        root: the data root (``Config.data.data_root``); created if missing.
        source: overrides ``SOURCES[name]`` (another mirror, or a test archive).
        progress: show a tqdm progress bar for the transfer.
        timeout: seconds to wait to connect and for each read.
        keep_archive: keep the verified archive in ``<root>/.downloads/``.
            An archive that was already there before the call (put there by
            hand, or kept earlier) is used instead of downloading, and is
            never deleted.
        retries: how many times a transfer dropped mid-way is resumed before
            giving up (the partial file is kept for the next call).

    Raises:
        DownloadError: offline, HTTP error, checksum mismatch, an unsafe
            archive member, or contents that do not verify. Nothing is left
            half-unpacked.
    """
    src = source if source is not None else _lookup(name)
    root = pathlib.Path(root).expanduser()
    dest = root / src.name
    if dest.exists():
        try:
            verify_contents(src, dest)
        except DownloadError as err:
            raise DownloadError(
                f"{dest} already exists but does not verify: {err}\n"
                f"It was left untouched. Repair it so it holds {src.describe()}, or move it away "
                f"and call download({src.name!r}, {str(root)!r}) again.") from None
        return dest

    root.mkdir(parents=True, exist_ok=True)
    cache = root / ".downloads"
    archive = cache / src.archive_name
    placed = archive.exists()  # put there by hand or kept by an earlier call: never ours to delete
    try:
        if placed:
            _check_archive(src, archive, delete_on_error=False)
        else:
            cache.mkdir(exist_ok=True)
            part = cache / (src.archive_name + ".part")
            _fetch(src, part, dest=dest, archive=archive, progress=progress, timeout=timeout, retries=retries)
            _check_archive(src, part, delete_on_error=True)
            os.replace(part, archive)
        _unpack(src, archive, dest, progress=progress)
    finally:
        if not placed and not keep_archive:
            archive.unlink(missing_ok=True)
        _remove_if_empty(cache)  # still holds a .part to resume, or a kept archive, if not empty
    return dest


def verify_contents(name_or_source: str | Source, folder: str | os.PathLike) -> None:
    """Check that ``folder`` holds a complete copy of a dataset; raise DownloadError naming what is wrong.

    Reads the metadata CSV, checks its row count and that every file it lists
    is present (under ``audio/`` or ``audio/fold<k>/``); for sources that fix
    the format (ESC-50: 5 s, 44.1 kHz, mono), reads each file's header with
    :func:`soundfile.info` (no decoding) and checks rate, channels and
    duration; for ``exact_files`` sources, that ``audio/`` holds no other WAV.
    """
    src = name_or_source if isinstance(name_or_source, Source) else _lookup(name_or_source)
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


# --------------------------------------------------------------------------
# helpers: lookup and verification


def _lookup(name: str) -> Source:
    key = _ALIASES.get(name, name)
    if key not in SOURCES:
        valid = sorted(set(SOURCES) | set(_ALIASES))
        raise DownloadError(f"unknown dataset {name!r}: choose one of {', '.join(valid)} "
                            "(or pass source=Source(...) for another archive)")
    return SOURCES[key]


def _some(items: list[str]) -> str:
    shown = ", ".join(items[:_PROBLEMS_SHOWN])
    return shown + (f", ... ({len(items) - _PROBLEMS_SHOWN} more)" if len(items) > _PROBLEMS_SHOWN else "")


def _check_formats(src: Source, paths: list[pathlib.Path], folder: pathlib.Path) -> list[str]:
    import soundfile  # imported here so the rest of the module needs only the standard library

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
            while chunk := f.read(_CHUNK):
                for h in hashes.values():
                    h.update(chunk)
    return {k: h.hexdigest() for k, h in hashes.items()}


def _check_archive(src: Source, path: pathlib.Path, *, delete_on_error: bool) -> None:
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


# --------------------------------------------------------------------------
# helpers: transfer


class _Interrupted(Exception):
    """The transfer stopped early; what was received is in the .part file."""


class _Offline(Exception):
    """No connection could be made (refused, DNS failure, no route, timeout)."""


def _offline_message(src: Source, err: BaseException, dest: pathlib.Path, archive: pathlib.Path,
                     part: pathlib.Path) -> str:
    reason = getattr(err, "reason", err)
    kept = (f" The {part.stat().st_size} bytes received so far are kept in {part} and will be resumed."
            if part.exists() and part.stat().st_size else "")
    return (
        f"could not connect to download {src.name} from {src.url} ({reason}): this machine appears to be "
        f"offline.{kept}\n"
        f"To install it by hand, fetch {src.url} on a machine with internet access, unpack it and move "
        f"its folder {src.top_folder or '(the archive top level)'!r} to {dest} — that folder must hold "
        f"{src.describe()}. Then call download() again (it verifies the folder and returns it).\n"
        f"Alternatively, copy the archive itself to {archive} and call download() again: it is checked "
        f"and unpacked without going online.")


def _fetch(src: Source, part: pathlib.Path, *, dest: pathlib.Path, archive: pathlib.Path, progress: bool,
           timeout: float, retries: int) -> None:
    """Stream ``src.url`` into ``part``, resuming what is already there."""
    attempt = 0
    while True:
        try:
            _fetch_once(src, part, progress=progress, timeout=timeout)
            return
        except _Interrupted as why:
            attempt += 1
            if attempt > retries:
                got = part.stat().st_size if part.exists() else 0
                raise DownloadError(
                    f"the download of {src.url} was interrupted {attempt} times ({why}). The {got} bytes "
                    f"received are kept in {part}: call download() again to resume.") from None
        except urllib.error.HTTPError as err:
            raise DownloadError(
                f"{src.url} answered HTTP {err.code} {err.reason}: expected the {src.name} archive. "
                f"Check the URL (pass source=Source(...) for a mirror), or place the unpacked dataset "
                f"in {dest} by hand so it holds {src.describe()}.") from None
        except _Offline as err:
            # Retrying a connection that cannot be made only makes the user wait.
            raise DownloadError(_offline_message(src, err.args[0], dest, archive, part)) from None


def _fetch_once(src: Source, part: pathlib.Path, *, progress: bool, timeout: float) -> None:
    from tqdm.auto import tqdm

    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "soundclr-download/1.0"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(src.url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code != 416 or not have:
            raise
        # 416: nothing at or after `have`. If the server's total equals what we hold, the part is whole.
        total = _content_range_total(err.headers.get("Content-Range", ""))
        err.close()
        if total == have:
            return
        part.unlink()
        raise _Interrupted(f"the server refused to resume at byte {have} (HTTP 416), restarting") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        raise _Offline(err) from None

    with response:
        status = response.status
        length = response.headers.get("Content-Length")
        if have and status == 206:
            start = _content_range_start(response.headers.get("Content-Range", ""))
            if start != have:
                part.unlink()
                raise _Interrupted(f"asked to resume at byte {have}, the server sent byte {start}; restarting")
            mode = "ab"
        else:
            have, mode = 0, "wb"  # a 200 answer is the whole file: the server ignored Range
        expected = have + int(length) if length is not None else None
        bar_total = expected if expected is not None else src.size
        received = have
        with open(part, mode) as out, tqdm(total=bar_total, initial=have, unit="B", unit_scale=True,
                                            unit_divisor=1024, desc=src.archive_name, disable=not progress,
                                            leave=False) as bar:
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except (OSError, http.client.HTTPException) as err:
                    raise _Interrupted(f"connection lost after {received} bytes: {err!r}") from None
                if not chunk:
                    break
                out.write(chunk)  # a disk error here is not a network problem: let it propagate
                received += len(chunk)
                bar.update(len(chunk))
        # http.client returns a short body without raising when the peer closes early.
        if expected is not None and received < expected:
            raise _Interrupted(f"connection closed after {received} of {expected} bytes")


def _content_range_total(value: str) -> int | None:
    m = re.match(r"\s*bytes\s+(?:\*|\d+-\d+)/(\d+)", value)
    return int(m.group(1)) if m else None


def _content_range_start(value: str) -> int | None:
    m = re.match(r"\s*bytes\s+(\d+)-\d+/(?:\d+|\*)", value)
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------
# helpers: safe unpacking


def _member_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """tarfile's ``"data"`` extraction filter (PEP 706), with absolute names refused instead of made relative.

    The data filter refuses a member that would land outside ``dest`` (``..``,
    or written through a link that leads out), a link whose target is
    absolute or outside ``dest``, and device, FIFO and other special files;
    it ignores owners and drops unsafe mode bits. It is called just before
    each member is written, so links unpacked earlier are followed when the
    next member's real path is checked. It would strip the leading ``/`` of
    an absolute name and unpack the member inside; a dataset archive never
    has one, so such an archive is refused as made by hand or with intent.
    """
    if member.name.startswith("/") or os.path.isabs(member.name):
        raise tarfile.AbsolutePathError(member)
    return tarfile.data_filter(member, dest)


def _refusal(archive: pathlib.Path, err: tarfile.FilterError) -> DownloadError:
    """A DownloadError naming the archive, the refused member and why."""
    member = err.tarinfo
    if isinstance(err, tarfile.AbsolutePathError):
        why = "has an absolute path"
    elif isinstance(err, tarfile.OutsideDestinationError):
        why = "has a path that leads outside the folder it is unpacked into"
    elif isinstance(err, tarfile.AbsoluteLinkError):
        why = f"is a link to the absolute path {member.linkname!r}"
    elif isinstance(err, tarfile.LinkOutsideDestinationError):
        why = f"is a link to {member.linkname!r}, which points outside the folder it is unpacked into"
    elif isinstance(err, tarfile.SpecialFileError):
        why = "is a device, FIFO or other special file"
    else:
        why = f"was refused by the extraction filter ({err})"
    return DownloadError(f"refusing to unpack {archive.name}: member {member.name!r} {why}. The archive is not safe "
                         f"to unpack; nothing was written outside the temporary folder, which was removed.")


def _zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> tarfile.TarInfo:
    """A zip entry as a tar member, so that :func:`_member_filter` judges both formats alike."""
    member = tarfile.TarInfo(info.filename)
    mode = info.external_attr >> 16 if info.create_system == 3 else 0   # Unix permissions, when recorded
    if stat.S_ISLNK(mode):
        member.type = tarfile.SYMTYPE
        member.linkname = zf.read(info).decode("utf-8", "surrogateescape")
    elif info.is_dir():
        member.type = tarfile.DIRTYPE
    else:
        member.type, member.size = tarfile.REGTYPE, info.file_size
    member.mode = stat.S_IMODE(mode) or (0o755 if info.is_dir() else 0o644)
    return member


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


def _unzip(zf: zipfile.ZipFile, base: pathlib.Path, infos) -> None:
    """Write each zip entry under ``base``, each passed through :func:`_member_filter` just before."""
    for info in infos:
        member = _member_filter(_zip_member(zf, info), str(base))
        target = os.path.join(base, member.name)
        if member.isdir():
            os.makedirs(target, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if member.issym():
            os.symlink(member.linkname, target)
        else:
            with zf.open(info) as data, os.fdopen(os.open(target, _CREATE, member.mode or 0o644), "wb") as out:
                shutil.copyfileobj(data, out, _CHUNK)


def _unpack(src: Source, archive: pathlib.Path, dest: pathlib.Path, *, progress: bool) -> None:
    """Unpack into a temporary folder beside ``dest``, verify, then rename into place."""
    from tqdm.auto import tqdm

    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{src.name}-unpacking-", dir=dest.parent))
    bar = dict(desc=f"unpacking {archive.name}", unit="file", disable=not progress, leave=False)
    try:
        try:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as zf:
                    _unzip(zf, tmp, tqdm(zf.infolist(), **bar))
            elif tarfile.is_tarfile(archive):
                with tarfile.open(archive, "r:*") as tf:   # members are read as they come: decompressed once
                    tf.extractall(tmp, members=tqdm(tf, **bar), filter=_member_filter)
            else:
                raise DownloadError(f"{archive} is neither a zip nor a tar archive: expected {src.archive_name} "
                                    f"from {src.url}. Delete it and call download() again.")
        except tarfile.FilterError as err:
            raise _refusal(archive, err) from None
        except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError, RuntimeError, KeyError) as err:
            # KeyError: tarfile's way of saying a hard link's target is not in the archive
            raise DownloadError(f"could not unpack {archive}: {err!r}. Nothing was kept; delete the archive "
                                "and call download() again if the problem persists.") from None
        top = tmp / src.top_folder if src.top_folder else tmp
        if not top.is_dir():
            found = sorted(p.name for p in tmp.iterdir())
            raise DownloadError(f"{archive.name} holds {found} at its top level, expected the folder "
                                f"{src.top_folder!r}. Nothing was kept.")
        try:
            verify_contents(src, top)
        except DownloadError as err:
            raise DownloadError(f"{archive.name} from {src.url} unpacked, but its contents do not verify: {err}. "
                                f"Nothing was kept (the temporary folder was removed).") from None
        os.replace(top, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_if_empty(folder: pathlib.Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass
