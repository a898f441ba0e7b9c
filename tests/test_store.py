import pytest
import torch

from soundclr.store import atomic_file, atomic_torch_save, atomic_write_json, read_json


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
