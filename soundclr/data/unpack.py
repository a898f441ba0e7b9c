"""Unpacking a dataset archive safely: the standard library's ``"data"`` extraction filter for tar and zip.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import stat
import tarfile
import tempfile
import zipfile

from tqdm.auto import tqdm

from .layouts import Source
from .verify import CHUNK, DownloadError, verify_contents


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
                shutil.copyfileobj(data, out, CHUNK)


def unpack_archive(src: Source, archive: pathlib.Path, dest: pathlib.Path, *, progress: bool) -> None:
    """Unpack into a temporary folder beside ``dest``, verify, then rename into place."""

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


def remove_if_empty(folder: pathlib.Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass
