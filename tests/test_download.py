"""soundclr.data.fetch against small archives served from 127.0.0.1 (never the internet).

The archives are built here in the layout of the real ones (ESC-50's GitHub
zip, UrbanSound8K's tar.gz) with a handful of short WAVs; the Sources are the
real ones with the URL, checksums and expected counts/lengths swapped, so the
same verification code runs.
"""
from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import socket
import stat
import tarfile
import threading
import zipfile

import numpy as np
import pytest
import soundfile

from soundclr.data import fetch as dl
from soundclr.data.fetch import download
from soundclr.data.layouts import SOURCES, Source
from soundclr.data.verify import DownloadError, verify_contents

RATE = 8000
SECONDS = 0.05
ESC_FILES = ["1-100038-A-14.wav", "1-100210-A-36.wav", "2-101676-A-10.wav", "3-102583-A-17.wav"]
US8K_FILES = [("100032-3-0-0.wav", 1, 16000, 1), ("100263-2-0-117.wav", 1, 22050, 2),
              ("100648-1-0-0.wav", 2, 44100, 1), ("101415-3-0-2.wav", 3, 8000, 2)]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    # A proxy configured in the environment must not swallow loopback requests.
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


# ---------------------------------------------------------------------------
# building archives


def wav(seconds=SECONDS, rate=RATE, channels=1, seed=0) -> bytes:
    frames = int(round(seconds * rate))
    data = np.random.default_rng(seed).uniform(-0.5, 0.5, (frames, channels)).astype(np.float32)
    buf = io.BytesIO()
    soundfile.write(buf, data, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def esc_members(files=ESC_FILES, listed=None, **wav_kw) -> dict[str, bytes]:
    """ESC-50-master/... as in the GitHub zip: meta/esc50.csv, audio/*.wav, and repository files."""
    listed = files if listed is None else listed
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    rows += [f"{f},{f[0]},{i},class{i},False,{f.split('-')[1]},A" for i, f in enumerate(listed)]
    members = {"ESC-50-master/README.md": b"# ESC-50\n",
               "ESC-50-master/meta/esc50.csv": ("\n".join(rows) + "\n").encode()}
    for i, f in enumerate(files):
        members[f"ESC-50-master/audio/{f}"] = wav(seed=i, **wav_kw.get(f, {}))
    return members


def make_zip(members: dict[str, bytes], extra: list[tuple[zipfile.ZipInfo, bytes]] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for info, data in extra:
            zf.writestr(info, data)
    return buf.getvalue()


def us8k_members(files=US8K_FILES) -> dict[str, bytes]:
    rows = ["slice_file_name,fsID,start,end,salience,fold,classID,class"]
    rows += [f"{f},{f.split('-')[0]},0.0,0.05,1,{fold},{f.split('-')[1]},c" for f, fold, _, _ in US8K_FILES]
    members = {"UrbanSound8K/FREESOUNDCREDITS.txt": b"credits\n",
               "UrbanSound8K/metadata/UrbanSound8K.csv": ("\n".join(rows) + "\n").encode()}
    for i, (f, fold, rate, ch) in enumerate(files):
        members[f"UrbanSound8K/audio/fold{fold}/{f}"] = wav(rate=rate, channels=ch, seed=i)
    return members


def make_tgz(members: dict[str, bytes], extra: list[tarfile.TarInfo] = (), after: list[tarfile.TarInfo] = ()) -> bytes:
    """A .tar.gz of ``members``, with data-less entries (links, devices) before (``extra``) or after them."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for info in extra:
            tf.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for info in after:
            tf.addfile(info)
    return buf.getvalue()


def tar_link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def esc_source(url: str, blob: bytes, **kw) -> Source:
    """The real ESC-50 Source, shrunk: same checks, small counts, short clips."""
    settings = dict(url=url, sha256=hashlib.sha256(blob).hexdigest(), size=len(blob),
                    n_clips=len(ESC_FILES), clip_seconds=SECONDS, sample_rate=RATE)
    settings.update(kw)
    return dataclasses.replace(SOURCES["esc50"], **settings)


def us8k_source(url: str, blob: bytes, **kw) -> Source:
    settings = dict(url=url, md5=hashlib.md5(blob).hexdigest(), n_clips=len(US8K_FILES))
    settings.update(kw)
    return dataclasses.replace(SOURCES["us8k"], **settings)


# ---------------------------------------------------------------------------
# a loopback HTTP server


class Server:
    """Serves in-memory files on 127.0.0.1 and records each request's Range header.

    mode: "range" honours ``Range: bytes=N-`` (206, or 416 past the end);
    "ignore_range" always answers 200 with the whole file; "drop" sends the
    headers for the full body, then half of it, then closes the connection,
    for the first ``drops`` requests (all of them if None), then behaves as "range".
    """

    def __init__(self, files: dict[str, bytes], mode="range", drops=1):
        self.files, self.mode, self.drops = files, mode, drops
        self.requests: list[str | None] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append(self.headers.get("Range"))
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and outer.mode != "ignore_range":
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                dropping = outer.mode == "drop" and (outer.drops is None or len(outer.requests) <= outer.drops)
                if dropping:
                    half = start + (len(body) - start) // 2
                    self.wfile.write(body[start:half])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                else:
                    self.wfile.write(body[start:])

        class Quiet(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # the "drop" mode breaks connections on purpose

        self.httpd = Quiet(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def serve():
    servers = []

    def start(files, **kw) -> Server:
        servers.append(Server(files, **kw))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def leftovers(root) -> list[str]:
    """Everything in root except the dataset folders: temporary folders, archives, parts."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.relative_to(root).parts[0] not in ("esc50", "us8k"))


# ---------------------------------------------------------------------------
# full downloads


def test_esc50_zip_downloaded_unpacked_and_verified(serve, tmp_path):
    members = esc_members()
    blob = make_zip(members)
    server = serve({"/esc.zip": blob})
    root = tmp_path / "data"
    out = download("esc50", root, source=esc_source(server.url("/esc.zip"), blob), progress=False)
    assert out == root / "esc50"
    got = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    want = {name.removeprefix("ESC-50-master/"): data for name, data in members.items()}
    assert got == want
    assert leftovers(root) == []  # archive deleted, no temporary folder, empty .downloads removed
    assert server.requests == [None]


def test_esc10_uses_the_esc50_folder(serve, tmp_path):
    blob = make_zip(esc_members())
    server = serve({"/esc.zip": blob})
    download("esc50", tmp_path, source=esc_source(server.url("/esc.zip"), blob), progress=False)
    # With the destination in place, "esc10" resolves to the real ESC-50 Source and its folder.
    with pytest.raises(DownloadError, match="esc50 already exists but does not verify"):
        download("esc10", tmp_path, progress=False)  # the real Source expects 2000 clips


def test_us8k_tgz_downloaded_into_fold_folders_and_archive_kept_on_request(serve, tmp_path):
    members = us8k_members()
    blob = make_tgz(members)
    server = serve({"/us.tgz": blob})
    out = download("us8k", tmp_path, source=us8k_source(server.url("/us.tgz"), blob), keep_archive=True)
    assert out == tmp_path / "us8k"
    for name, data in members.items():
        assert (out / name.removeprefix("UrbanSound8K/")).read_bytes() == data
    assert (tmp_path / ".downloads" / "UrbanSound8K.tar.gz").read_bytes() == blob
    assert leftovers(tmp_path) == [".downloads", ".downloads/UrbanSound8K.tar.gz"]


def test_second_call_does_not_touch_the_network(serve, tmp_path):
    blob = make_zip(esc_members())
    server = serve({"/esc.zip": blob})
    src = esc_source(server.url("/esc.zip"), blob)
    first = download("esc50", tmp_path, source=src, progress=False)
    stamp = {p: p.stat().st_mtime_ns for p in first.rglob("*")}
    # Point at a closed port: any network access would now fail.
    offline = dataclasses.replace(src, url=f"http://127.0.0.1:{closed_port()}/esc.zip")
    assert download("esc50", tmp_path, source=offline, progress=False) == first
    assert download("esc50", tmp_path, source=src, progress=False) == first
    assert server.requests == [None]
    assert {p: p.stat().st_mtime_ns for p in first.rglob("*")} == stamp


def test_existing_incomplete_folder_is_an_error_and_left_untouched(serve, tmp_path):
    blob = make_zip(esc_members())
    server = serve({"/esc.zip": blob})
    mine = tmp_path / "esc50" / "my-notes.txt"
    mine.parent.mkdir()
    mine.write_text("do not delete")
    with pytest.raises(DownloadError, match=r"already exists but does not verify(.|\n)*esc50\.csv"):
        download("esc50", tmp_path, source=esc_source(server.url("/esc.zip"), blob), progress=False)
    assert mine.read_text() == "do not delete"
    assert sorted(p.name for p in (tmp_path / "esc50").iterdir()) == ["my-notes.txt"]
    assert server.requests == []


def test_archive_placed_by_hand_is_used_offline_and_kept(tmp_path):
    blob = make_tgz(us8k_members())
    placed = tmp_path / ".downloads" / "UrbanSound8K.tar.gz"
    placed.parent.mkdir()
    placed.write_bytes(blob)
    src = us8k_source(f"http://127.0.0.1:{closed_port()}/us.tgz", blob)
    out = download("us8k", tmp_path, source=src, progress=False)
    assert (out / "metadata" / "UrbanSound8K.csv").is_file()
    assert placed.read_bytes() == blob


# ---------------------------------------------------------------------------
# resuming


def test_partial_download_is_resumed_with_a_range_request(serve, tmp_path):
    blob = make_zip(esc_members())
    server = serve({"/esc.zip": blob})
    n = len(blob) // 3
    part = tmp_path / ".downloads" / "ESC-50-master.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(blob[:n])
    download("esc50", tmp_path, source=esc_source(server.url("/esc.zip"), blob), progress=False, keep_archive=True)
    assert server.requests == [f"bytes={n}-"]
    assert (tmp_path / ".downloads" / "ESC-50-master.zip").read_bytes() == blob
    assert not part.exists()


def test_server_ignoring_range_restarts_from_zero(serve, tmp_path):
    blob = make_zip(esc_members())
    server = serve({"/esc.zip": blob}, mode="ignore_range")
    part = tmp_path / ".downloads" / "ESC-50-master.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 100)  # wrong bytes: appending to them would fail the checksum
    out = download("esc50", tmp_path, source=esc_source(server.url("/esc.zip"), blob), progress=False)
    assert server.requests == ["bytes=100-"]
    assert (out / "meta" / "esc50.csv").is_file()


def test_416_with_a_complete_part_needs_no_more_bytes(serve, tmp_path):
    blob = make_zip(esc_members())
    server = serve({"/esc.zip": blob})
    part = tmp_path / ".downloads" / "ESC-50-master.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(blob)
    out = download("esc50", tmp_path, source=esc_source(server.url("/esc.zip"), blob), progress=False)
    assert server.requests == [f"bytes={len(blob)}-"]
    assert (out / "meta" / "esc50.csv").is_file()


def test_416_with_an_oversized_part_restarts(serve, tmp_path):
    blob = make_zip(esc_members())
    server = serve({"/esc.zip": blob})
    part = tmp_path / ".downloads" / "ESC-50-master.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(blob + b"junk")
    out = download("esc50", tmp_path, source=esc_source(server.url("/esc.zip"), blob), progress=False)
    assert server.requests == [f"bytes={len(blob) + 4}-", None]
    assert (out / "meta" / "esc50.csv").is_file()


def test_dropped_connection_is_resumed(serve, tmp_path):
    blob = make_tgz(us8k_members())
    server = serve({"/us.tgz": blob}, mode="drop", drops=1)
    out = download("us8k", tmp_path, source=us8k_source(server.url("/us.tgz"), blob), progress=False)
    assert server.requests == [None, f"bytes={len(blob) // 2}-"]
    assert (out / "metadata" / "UrbanSound8K.csv").is_file()


def test_connection_dropping_every_time_keeps_the_part_for_the_next_call(serve, tmp_path):
    blob = make_tgz(us8k_members())
    bad = serve({"/us.tgz": blob}, mode="drop", drops=None)
    with pytest.raises(DownloadError, match="interrupted 2 times(.|\n)*call download\\(\\) again to resume"):
        download("us8k", tmp_path, source=us8k_source(bad.url("/us.tgz"), blob), progress=False, retries=1)
    part = tmp_path / ".downloads" / "UrbanSound8K.tar.gz.part"
    have = part.stat().st_size
    assert 0 < have < len(blob) and part.read_bytes() == blob[:have]
    assert not (tmp_path / "us8k").exists()
    good = serve({"/us.tgz": blob})
    download("us8k", tmp_path, source=us8k_source(good.url("/us.tgz"), blob), progress=False)
    assert good.requests == [f"bytes={have}-"]


# ---------------------------------------------------------------------------
# checksums


@pytest.mark.parametrize("field, label", [("md5", "MD5"), ("sha256", "SHA-256"), ("size", "size")])
def test_checksum_mismatch_is_an_error_that_unpacks_nothing(serve, tmp_path, field, label):
    blob = make_tgz(us8k_members())
    server = serve({"/us.tgz": blob})
    wrong = {"md5": "0" * 32, "sha256": "0" * 64, "size": len(blob) + 1}[field]
    src = us8k_source(server.url("/us.tgz"), blob, **{field: wrong})
    with pytest.raises(DownloadError, match=f"checksum mismatch(.|\n)*{label}(.|\n)*it was deleted"):
        download("us8k", tmp_path, source=src, progress=False, keep_archive=True)
    assert leftovers(tmp_path) == []  # the .part is gone, nothing unpacked
    assert not (tmp_path / "us8k").exists()


def test_esc50_checksum_mismatch_is_a_warning_and_contents_are_checked(serve, tmp_path):
    blob = make_zip(esc_members())
    server = serve({"/esc.zip": blob})
    src = esc_source(server.url("/esc.zip"), blob, sha256="0" * 64, size=645_695_005)
    with pytest.warns(UserWarning, match="SHA-256(.|\n)*can change upstream"):
        out = download("esc50", tmp_path, source=src, progress=False)
    assert (out / "meta" / "esc50.csv").is_file()


def test_placed_archive_with_a_wrong_checksum_is_not_deleted(tmp_path):
    blob = make_tgz(us8k_members())
    placed = tmp_path / ".downloads" / "UrbanSound8K.tar.gz"
    placed.parent.mkdir()
    placed.write_bytes(blob)
    src = us8k_source("http://127.0.0.1:9/x", blob, md5="0" * 32)
    with pytest.raises(DownloadError, match="MD5(.|\n)*Delete or replace"):
        download("us8k", tmp_path, source=src, progress=False)
    assert placed.read_bytes() == blob


# ---------------------------------------------------------------------------
# content verification


@pytest.mark.parametrize("case, members, message", [
    ("missing wav", esc_members(files=ESC_FILES[:-1], listed=ESC_FILES), "1 listed audio file.s. missing: audio/3-102583"),
    ("unlisted wav", esc_members(files=ESC_FILES + ["9-9-A-9.wav"], listed=ESC_FILES), "not listed(.|\n)*9-9-A-9.wav"),
    ("wrong rate", esc_members(**{ESC_FILES[1]: dict(rate=16000, seconds=SECONDS)}), "1-100210-A-36.wav: rate 16000 Hz"),
    ("wrong duration", esc_members(**{ESC_FILES[2]: dict(seconds=2 * SECONDS)}), r"2-101676-A-10.wav: 800 samples = 0\.100 s"),
    ("stereo", esc_members(**{ESC_FILES[0]: dict(channels=2)}), "1-100038-A-14.wav: 2 channels"),
    ("wrong count", esc_members(files=ESC_FILES[:3]), "lists 3 clips, expected 4"),
])
def test_contents_that_do_not_verify_leave_nothing_behind(serve, tmp_path, case, members, message):
    blob = make_zip(members)
    server = serve({"/esc.zip": blob})
    with pytest.raises(DownloadError, match=f"contents do not verify(.|\n)*{message}"):
        download("esc50", tmp_path, source=esc_source(server.url("/esc.zip"), blob), progress=False)
    assert not (tmp_path / "esc50").exists()
    assert leftovers(tmp_path) == []


def test_us8k_missing_file_in_a_fold(serve, tmp_path):
    members = us8k_members()
    del members["UrbanSound8K/audio/fold2/100648-1-0-0.wav"]
    blob = make_tgz(members)
    server = serve({"/us.tgz": blob})
    with pytest.raises(DownloadError, match="missing: audio/fold2/100648-1-0-0.wav"):
        download("us8k", tmp_path, source=us8k_source(server.url("/us.tgz"), blob), progress=False)
    assert leftovers(tmp_path) == [] and not (tmp_path / "us8k").exists()


def test_wrong_top_folder_is_reported(serve, tmp_path):
    members = {k.replace("ESC-50-master/", "ESC-50-main/"): v for k, v in esc_members().items()}
    blob = make_zip(members)
    server = serve({"/esc.zip": blob})
    with pytest.raises(DownloadError, match=r"\['ESC-50-main'\](.|\n)*expected the folder 'ESC-50-master'"):
        download("esc50", tmp_path, source=esc_source(server.url("/esc.zip"), blob), progress=False)
    assert leftovers(tmp_path) == []


def test_verify_contents_on_a_folder_made_by_hand(tmp_path):
    for name, data in esc_members().items():
        path = tmp_path / "esc50" / name.removeprefix("ESC-50-master/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    small = esc_source("http://unused", b"")
    verify_contents(small, tmp_path / "esc50")
    with pytest.raises(DownloadError, match="lists 4 clips, expected 2000(.|\n)*rate 8000 Hz"):
        verify_contents("esc50", tmp_path / "esc50")
    with pytest.raises(DownloadError, match="metadata/UrbanSound8K.csv is missing"):
        verify_contents("us8k", tmp_path / "esc50")
    with pytest.raises(DownloadError, match="unknown dataset 'esc100': choose one of esc10, esc50, us8k"):
        verify_contents("esc100", tmp_path)


# ---------------------------------------------------------------------------
# unsafe archives


def zip_symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = 0o120777 << 16
    return info, target.encode()


def unsafe_archive(case: str, tmp_path) -> tuple[str, bytes]:
    abs_target = str(tmp_path / "evil-abs")
    esc, us = esc_members(), us8k_members()
    if case == "zip ..":
        return "zip", make_zip({**esc, "ESC-50-master/../../../evil": b"x"})
    if case == "zip leading ..":
        return "zip", make_zip({"../../evil": b"x", **esc})
    if case == "zip absolute":
        return "zip", make_zip({**esc, abs_target: b"x"})
    if case == "zip symlink out":
        return "zip", make_zip(esc, [zip_symlink("ESC-50-master/link", "../../../..")])
    if case == "tar ..":
        return "tgz", make_tgz({**us, "UrbanSound8K/../../../evil": b"x"})
    if case == "tar absolute":
        return "tgz", make_tgz({**us, abs_target: b"x"})
    if case == "tar symlink out":
        return "tgz", make_tgz({**us, "UrbanSound8K/link/evil": b"x"}, [tar_link("UrbanSound8K/link", str(tmp_path))])
    if case == "tar relative symlink out":
        return "tgz", make_tgz({**us, "UrbanSound8K/link/evil": b"x"}, [tar_link("UrbanSound8K/link", "../../..")])
    if case == "tar write through inner link":
        return "tgz", make_tgz({**us, "UrbanSound8K/a/evil": b"x"}, [tar_link("UrbanSound8K/a", "metadata")])
    if case == "tar link chain":  # "a/../.." reads as the top, but through a -> "." it is the folder above
        return "tgz", make_tgz(us, [tar_link("UrbanSound8K/a", "."), tar_link("UrbanSound8K/b", "a/../..")])
    if case == "tar hardlink out":
        return "tgz", make_tgz(us, [tar_link("UrbanSound8K/pw", "/etc/passwd", tarfile.LNKTYPE)])
    if case == "tar device":
        return "tgz", make_tgz(us, [tar_link("UrbanSound8K/dev", "", tarfile.CHRTYPE)])
    raise ValueError(case)


@pytest.mark.parametrize("case, member, why", [
    ("zip ..", "ESC-50-master/../../../evil", "has a path that leads outside the folder it is unpacked into"),
    ("zip leading ..", "../../evil", "has a path that leads outside"),
    ("zip absolute", "<abs>", "has an absolute path"),
    ("zip symlink out", "ESC-50-master/link", "is a link to '../../../..', which points outside"),
    ("tar ..", "UrbanSound8K/../../../evil", "has a path that leads outside"),
    ("tar absolute", "<abs>", "has an absolute path"),
    ("tar symlink out", "UrbanSound8K/link", "is a link to the absolute path '<tmp>'"),
    ("tar relative symlink out", "UrbanSound8K/link", "is a link to '../../..', which points outside"),
    ("tar link chain", "UrbanSound8K/b", "is a link to 'a/../..', which points outside"),
    ("tar hardlink out", "UrbanSound8K/pw", "is a link to the absolute path '/etc/passwd'"),
    ("tar device", "UrbanSound8K/dev", "is a device, FIFO or other special file"),
])
def test_unsafe_members_are_refused_and_nothing_is_written_outside(serve, tmp_path, case, member, why):
    kind, blob = unsafe_archive(case, tmp_path)
    server = serve({"/a": blob})
    root = tmp_path / "a" / "b" / "root"
    make = esc_source if kind == "zip" else us8k_source
    root.mkdir(parents=True)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(DownloadError) as err:
        download("x", root, source=make(server.url("/a"), blob), progress=False)
    member = member.replace("<abs>", str(tmp_path / "evil-abs"))
    why = why.replace("<tmp>", str(tmp_path))
    archive = "ESC-50-master.zip" if kind == "zip" else "UrbanSound8K.tar.gz"
    assert str(err.value).startswith(f"refusing to unpack {archive}: member {member!r} {why}"), str(err.value)
    assert "not safe to unpack" in str(err.value)
    assert sorted(tmp_path.rglob("*")) == before  # nothing outside, and no temporary folder or archive in root


def test_a_member_written_through_a_link_that_stays_inside_lands_inside(serve, tmp_path):
    # The extraction filter judges where a member really lands: through the link a -> metadata, inside.
    kind, blob = unsafe_archive("tar write through inner link", tmp_path)
    server = serve({"/a": blob})
    root = tmp_path / "root"
    out = download("us8k", root, source=us8k_source(server.url("/a"), blob), progress=False)
    assert (out / "a").is_symlink() and (out / "metadata" / "evil").read_bytes() == b"x"
    assert sorted(p.relative_to(tmp_path).parts[0] for p in tmp_path.iterdir()) == ["root"]
    assert leftovers(root) == []


def test_links_inside_the_archive_are_allowed(serve, tmp_path):
    blob = make_tgz(us8k_members(), after=[
        tar_link("UrbanSound8K/docs", "metadata"),
        tar_link("UrbanSound8K/credits", "UrbanSound8K/FREESOUNDCREDITS.txt", tarfile.LNKTYPE)])
    server = serve({"/b": blob})
    out = download("us8k", tmp_path, source=us8k_source(server.url("/b"), blob), progress=False)
    assert (out / "docs").is_symlink() and (out / "docs" / "UrbanSound8K.csv").is_file()
    assert (out / "credits").read_bytes() == b"credits\n" and not (out / "credits").is_symlink()


def test_zip_links_inside_are_unpacked_as_links(serve, tmp_path):
    blob = make_zip(esc_members(), [zip_symlink("ESC-50-master/docs", "meta"),
                                    zip_symlink("ESC-50-master/csv", "meta/esc50.csv")])
    server = serve({"/z": blob})
    out = download("esc50", tmp_path, source=esc_source(server.url("/z"), blob), progress=False)
    assert (out / "docs").is_symlink() and (out / "docs" / "esc50.csv").is_file()
    assert (out / "csv").is_symlink() and (out / "csv").read_bytes() == (out / "meta" / "esc50.csv").read_bytes()


def test_hard_link_to_a_file_not_in_the_archive_is_an_error(serve, tmp_path):
    blob = make_tgz(us8k_members(), after=[tar_link("UrbanSound8K/x", "UrbanSound8K/nowhere.txt", tarfile.LNKTYPE)])
    server = serve({"/h": blob})
    with pytest.raises(DownloadError, match=r"could not unpack .*UrbanSound8K\.tar\.gz(.|\n)*nowhere\.txt"):
        download("us8k", tmp_path, source=us8k_source(server.url("/h"), blob), progress=False)
    assert leftovers(tmp_path) == [] and not (tmp_path / "us8k").exists()


def test_unsafe_modes_are_dropped(serve, tmp_path):
    members = us8k_members()
    blob = make_tgz(members)
    with tarfile.open(fileobj=io.BytesIO(blob)) as tf:      # rebuild it with setuid, world-writable modes
        infos = [(info, tf.extractfile(info).read()) for info in tf]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for info, data in infos:
            info.mode = 0o6777 if info.name.endswith(".csv") else 0o666
            tf.addfile(info, io.BytesIO(data))
    blob = buf.getvalue()
    server = serve({"/m": blob})
    out = download("us8k", tmp_path, source=us8k_source(server.url("/m"), blob), progress=False)
    assert stat.S_IMODE((out / "metadata" / "UrbanSound8K.csv").stat().st_mode) == 0o755   # no setuid, no o+w
    assert stat.S_IMODE((out / "FREESOUNDCREDITS.txt").stat().st_mode) == 0o644


# ---------------------------------------------------------------------------
# offline and HTTP errors


@pytest.mark.parametrize("name, contains", [
    ("esc50", ["meta/esc50.csv", "exactly the 2000 audio files", "5 s, 44.1 kHz, mono", "'ESC-50-master'"]),
    ("us8k", ["metadata/UrbanSound8K.csv", "audio/fold1/ ... audio/fold10/", "8732 audio files", "'UrbanSound8K'"]),
])
def test_offline_fails_at_once_saying_where_to_put_the_data(tmp_path, monkeypatch, name, contains):
    calls = []
    real = dl.urllib.request.urlopen
    monkeypatch.setattr(dl.urllib.request, "urlopen", lambda *a, **k: calls.append(1) or real(*a, **k))
    url = f"http://127.0.0.1:{closed_port()}/{name}.archive"
    src = dataclasses.replace(SOURCES[name], url=url)
    with pytest.raises(DownloadError) as err:
        download(name, tmp_path, source=src, progress=False, retries=5)
    msg = str(err.value)
    assert "appears to be offline" in msg
    assert f"to {tmp_path / name} " in msg and url in msg
    assert str(tmp_path / ".downloads" / SOURCES[name].archive_name) in msg
    for text in contains:
        assert text in msg
    assert calls == [1]  # no retries for a connection that cannot be made
    assert not (tmp_path / name).exists()


def test_http_error_is_reported(serve, tmp_path):
    server = serve({})
    with pytest.raises(DownloadError, match="answered HTTP 404"):
        download("us8k", tmp_path, source=us8k_source(server.url("/nope"), b""), progress=False)
    assert not (tmp_path / "us8k").exists()


def test_unknown_dataset(tmp_path):
    with pytest.raises(DownloadError, match="unknown dataset 'urbansound': choose one of esc10, esc50, us8k"):
        download("urbansound", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_real_sources_match_the_published_records():
    us, esc = SOURCES["us8k"], SOURCES["esc50"]
    assert us.url == "https://zenodo.org/records/1203745/files/UrbanSound8K.tar.gz"
    assert us.md5 == "9aa69802bbf37fb986f71ec1483a196e" and us.on_checksum_mismatch == "error"
    assert (us.n_clips, us.fold_folders, us.metadata) == (8732, True, "metadata/UrbanSound8K.csv")
    assert esc.url == "https://github.com/karolpiczak/ESC-50/archive/master.zip"
    assert esc.sha256 == "805afc618aff80eff0641d51311647871fead5807da68bb18e43a27db47a79ce"
    assert (esc.size, esc.on_checksum_mismatch, esc.top_folder) == (645_695_005, "warning", "ESC-50-master")
    assert (esc.n_clips, esc.sample_rate, esc.channels, esc.clip_seconds, esc.exact_files) == (2000, 44100, 1, 5.0, True)
