import json
import os
import stat
from contextlib import contextmanager

import pytest
import torch

from soundclr.config import preset
from soundclr.files import (
    CorruptFileError,
    atomic_file,
    atomic_path,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_json,
    is_temporary,
    read_json,
)
from soundclr.train.record import load_config, read_metrics


def test_a_crash_mid_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "summary.json"
    atomic_write_json(path, {"finished": True})
    with pytest.raises(RuntimeError):
        with atomic_file(path) as f:
            f.write(b'{"half": ')
            raise RuntimeError("killed")
    assert read_json(path) == {"finished": True}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_torch_save_round_trip(tmp_path):
    atomic_torch_save(tmp_path / "m.pt", {"w": torch.arange(5)})
    assert torch.equal(torch.load(tmp_path / "m.pt")["w"], torch.arange(5))


# -- temporaries and permissions ------------------------------------------------------------

def test_temporaries_are_hidden_beside_the_file_and_recognised(tmp_path):
    seen = []
    with atomic_file(tmp_path / "summary.json") as f:
        seen += [p.name for p in tmp_path.iterdir()]
        f.write(b"{}")
    with atomic_path(tmp_path / "bank.npy") as tmp:
        seen += [p.name for p in tmp_path.iterdir() if p.name != "summary.json"]
        assert tmp.parent == tmp_path and tmp.exists() and tmp.stat().st_size == 0
    assert len(seen) == 2 and all(is_temporary(name) for name in seen)
    assert seen[0].startswith(".summary.json.") and seen[1].startswith(".bank.npy.")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bank.npy", "summary.json"]
    for name in ("summary.json", ".summary.json", "summary.json.tmp", ".summary.json.tmp",
                 ".summary.json.ABCDEF12.tmp", "summary.json.tmp-123-abcdef12", ".x.abcdef1.tmp"):
        assert not is_temporary(name), name
    assert is_temporary(".x.0123abcd.tmp") and is_temporary(".esc50-16000hz-v1-ab.npy.ffffffff.tmp")


def test_atomic_path_writes_by_name_and_removes_the_temporary_on_error(tmp_path):
    target = tmp_path / "bank.bin"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"first")
    assert target.read_bytes() == b"first"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"first" and [p.name for p in tmp_path.iterdir()] == ["bank.bin"]


@contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_files_get_the_mode_the_umask_gives_any_new_file(tmp_path, mask, mode):
    with umask(mask):
        atomic_write_json(tmp_path / "summary.json", {"a": 1})
        atomic_write_bytes(tmp_path / "metrics.jsonl", b"{}\n")
        atomic_torch_save(tmp_path / "model.pt", {"w": torch.zeros(1)})
        with atomic_path(tmp_path / "bank.npy") as tmp:
            tmp.write_bytes(b"x")
        with open(tmp_path / "reference", "w"):   # how the system creates a plain file under this umask
            pass
    reference = stat.S_IMODE((tmp_path / "reference").stat().st_mode)
    assert reference == mode
    for name in ("summary.json", "metrics.jsonl", "model.pt", "bank.npy"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_rewriting_a_file_gives_it_the_current_umask(tmp_path):
    path = tmp_path / "summary.json"
    with umask(0o077):
        atomic_write_json(path, {"a": 1})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with umask(0o002):
        atomic_write_json(path, {"a": 2})
    assert stat.S_IMODE(path.stat().st_mode) == 0o664 and read_json(path) == {"a": 2}


# -- corrupt files ---------------------------------------------------------------------------------

@pytest.mark.parametrize("content, problem", [
    (b"", "is empty"),
    (b'{"final": {"test_acc": 0.9', "is not valid JSON (Expecting ',' delimiter at line 1, column 27)"),
    (b"\x00\x00\x00\x00", "is not valid JSON"),
    (b"\xff\xfe\xfa garbage", "is not JSON text"),
])
def test_read_json_names_a_corrupt_run_record_and_says_to_delete_the_run(tmp_path, content, problem):
    run = tmp_path / "supcon-fold1-seed0-abc"
    run.mkdir()
    (run / "summary.json").write_bytes(content)
    with pytest.raises(CorruptFileError) as err:
        read_json(run / "summary.json")
    message = str(err.value)
    assert message.startswith(f"{run / 'summary.json'} {problem}")
    assert f"delete the run folder {run} and run again" in message
    assert err.value.path == run / "summary.json" and err.value.line is None
    assert isinstance(err.value, ValueError)   # the command line prints ValueErrors as one clear line


def test_read_json_on_another_file_says_to_delete_that_file(tmp_path):
    (tmp_path / "noise.json").write_text("{")
    with pytest.raises(CorruptFileError, match=f"delete {tmp_path / 'noise.json'} and run again"):
        read_json(tmp_path / "noise.json")


def test_read_json_missing_file_is_not_a_corrupt_one(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "summary.json")


def test_read_json_round_trips_what_atomic_write_json_wrote(tmp_path):
    value = {"final": {"test_acc": 0.875}, "epochs": [1, 2, 3], "name": "ünïcode", "none": None}
    atomic_write_json(tmp_path / "summary.json", value)
    assert read_json(tmp_path / "summary.json") == value == json.loads((tmp_path / "summary.json").read_text())


def write_metrics(run, rows) -> None:
    atomic_write_bytes(run / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())


def test_read_metrics_reads_every_epoch(tmp_path):
    rows = [{"epoch": e, "train_loss": 1.0 / e, "test_acc": None} for e in range(1, 6)]
    write_metrics(tmp_path, rows)
    assert read_metrics(tmp_path) == rows
    assert read_metrics(tmp_path / "not-started") == []
    write_metrics(tmp_path, [])
    assert read_metrics(tmp_path) == []


@pytest.mark.parametrize("spoil, line, problem", [
    (lambda text: text[:-10], 3, "is not valid JSON"),                       # torn last line
    (lambda text: text.replace('"epoch": 2', '"epoch" 2'), 2, "is not valid JSON"),
    (lambda text: text.replace("\n", "\n\n", 1), 2, "is empty"),
    (lambda text: "[1, 2]\n" + text, 1, "holds list"),
    (lambda text: text[:5] + "\x00\x00\x00" + text[8:], 1, "is not valid JSON"),
])
def test_read_metrics_names_the_file_and_the_bad_line(tmp_path, spoil, line, problem):
    write_metrics(tmp_path, [{"epoch": e, "train_loss": 0.5} for e in range(1, 4)])
    path = tmp_path / "metrics.jsonl"
    path.write_text(spoil(path.read_text()))
    with pytest.raises(CorruptFileError) as err:
        read_metrics(tmp_path)
    assert (err.value.path, err.value.line) == (path, line)
    message = str(err.value)
    assert message.startswith(f"{path}, line {line}, {problem}")
    assert f"delete the run folder {tmp_path} and run again" in message


def test_read_metrics_binary_garbage_names_its_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_bytes(b'{"epoch": 1}\n{"epoch": \xff\xff}\n')
    with pytest.raises(CorruptFileError, match=r"metrics\.jsonl, line 2, is not UTF-8 text"):
        read_metrics(tmp_path)


def test_load_config_of_a_corrupt_run(tmp_path):
    cfg = preset("quick", dataset="synthetic")
    atomic_write_json(tmp_path / "config.json", {"identity": cfg.identity(), "config": cfg.to_dict()})
    assert load_config(tmp_path).identity() == cfg.identity()
    (tmp_path / "config.json").write_text('{"identity": "x"}')
    with pytest.raises(CorruptFileError, match=r"config\.json is valid JSON but holds no 'config' object"):
        load_config(tmp_path)
    (tmp_path / "config.json").write_text('{"identity": "x", "conf')
    with pytest.raises(CorruptFileError, match=f"delete the run folder {tmp_path}"):
        load_config(tmp_path)
