"""Download and unpack the real datasets (ESC-50 / ESC-10 and UrbanSound8K).

``download("esc50", "data")`` leaves ``data/esc50/`` holding ``meta/esc50.csv`` and ``audio/``;
``download("us8k", "data")`` leaves ``data/us8k/`` holding ``metadata/UrbanSound8K.csv`` and
``audio/fold1`` ... ``audio/fold10``: where :mod:`soundclr.data.layouts` looks (ESC-10 reads the
ESC-50 folder, so ``download("esc10", ...)`` fetches ESC-50). In order:

1. A destination that already holds a verified copy is returned at once, with no network access;
   one that exists but does not verify is an error, and is never deleted (it may be a user's data).
2. The archive is streamed to ``<root>/.downloads/<archive>.part`` with a progress bar. A ``.part``
   left by an interrupted run is continued with an HTTP Range request; a server that ignores Range
   is read from zero; a connection dropped mid-transfer is resumed a few times before giving up.
3. Checksums are checked before anything is unpacked (:mod:`soundclr.data.verify`): UrbanSound8K's
   MD5 mismatch is an error; ESC-50 is a GitHub branch archive, so a mismatch there is a warning
   and the unpacked contents are checked strictly instead.
4. The archive is unpacked safely (:mod:`soundclr.data.unpack`) into a temporary folder, verified,
   and only then renamed into place, so a failure never leaves a half-unpacked dataset behind.

Without a network connection the call fails at once, saying where to put a copy fetched elsewhere.
"""
from __future__ import annotations

import http.client
import os
import pathlib
import re
import urllib.error
import urllib.request

from tqdm.auto import tqdm

from .layouts import Source
from .unpack import remove_if_empty, unpack_archive
from .verify import CHUNK, DownloadError, check_archive, source_for, verify_contents

__all__ = ["download"]


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
    src = source if source is not None else source_for(name)
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
            check_archive(src, archive, delete_on_error=False)
        else:
            cache.mkdir(exist_ok=True)
            part = cache / (src.archive_name + ".part")
            _fetch(src, part, dest=dest, archive=archive, progress=progress, timeout=timeout, retries=retries)
            check_archive(src, part, delete_on_error=True)
            os.replace(part, archive)
        unpack_archive(src, archive, dest, progress=progress)
    finally:
        if not placed and not keep_archive:
            archive.unlink(missing_ok=True)
        remove_if_empty(cache)  # still holds a .part to resume, or a kept archive, if not empty
    return dest


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
                    chunk = response.read(CHUNK)
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
