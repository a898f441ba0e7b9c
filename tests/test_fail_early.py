"""Fail before the work: missing ImageNet weights, a missing dataset folder, a results folder that
cannot be written and a bad setting are reported before any decoding or training starts; errors
spell a setting the way the user gives it (`--on-bad-file skip` at the command line,
`on_bad_file="skip"` in Python)."""
import os

import numpy as np
import pytest
import soundfile as sf

import soundclr.train.checks
import soundclr.train.state
import soundclr.weights
from soundclr import preset
from soundclr.cli import main
from soundclr.data.bank import load_bank
from soundclr.data.layouts import DatasetError
from soundclr.train import train_run
from soundclr.train.checks import ResultsFolderError, preflight
from soundclr.weights import WeightsError

HEADER = "filename,fold,target,category,esc10,src_file,take\n"


@pytest.fixture
def no_work(monkeypatch, tmp_path):
    """Decoding (or generating) a dataset fails the test; ImageNet weights are looked for in an empty
    torch hub folder and cannot be downloaded (offline, at once)."""
    def decoding(*args, **kwargs):
        raise AssertionError("the dataset was decoded before the error was reported")

    def offline(url, dst, timeout):
        raise OSError("network is unreachable")

    monkeypatch.setattr(soundclr.train.state, "load_bank", decoding)
    monkeypatch.setattr(soundclr.train.checks, "download_file", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("SOUNDCLR_INTERFACE", raising=False)
    return tmp_path


def esc_tree(root, clips=4, bad: str | None = None):
    """An ESC-50-layout folder with ``clips`` short clips over folds 1 and 2; ``bad`` names a file
    listed in the metadata but missing."""
    folder = root / "esc50"
    (folder / "audio").mkdir(parents=True)
    rows = []
    for i in range(clips):
        name = f"{i % 2 + 1}-{i}-A-0.wav"
        sf.write(folder / "audio" / name, np.random.default_rng(i).uniform(-0.5, 0.5, 4410), 44100)
        rows.append(f"{name},{i % 2 + 1},0,dog,True,{i},A\n")
    if bad:
        rows.append(f"{bad},1,0,dog,True,99,A\n")
    (folder / "meta").mkdir()
    (folder / "meta" / "esc50.csv").write_text(HEADER + "".join(rows))
    return root


def test_train_with_no_arguments_says_the_weights_are_missing_first(no_work, capsys):
    """The paper preset (ResNet-50, ImageNet weights): no decoding of the dataset before the error."""
    tmp = no_work
    assert main(["train", "--results", str(tmp / "results"), "--data-root", str(tmp / "data")]) == 1
    err = capsys.readouterr().err
    assert "ImageNet weights for resnet50" in err and "--weights none" in err and "weights=" not in err
    assert str(tmp / "torch-home" / "hub" / "checkpoints") in err
    assert not (tmp / "data").exists()
    assert "SOUNDCLR_INTERFACE" not in os.environ        # the command line's spelling ends with the command


def test_python_callers_get_the_python_spelling(no_work):
    tmp = no_work
    cfg = preset("paper", dataset="synthetic", data_root=str(tmp / "data"), backbone="resnet18")
    with pytest.raises(WeightsError, match='weights="none"'):
        train_run(cfg, tmp / "run")
    with pytest.raises(WeightsError, match="no ImageNet weights for the 'tiny' backbone"):
        preflight(cfg.override(backbone="tiny"))
    with pytest.raises(WeightsError, match="no such file"):
        preflight(cfg.override(weights=str(tmp / "missing.pt")))
    assert not (tmp / "data").exists()


def test_cached_imagenet_weights_pass(no_work):
    tmp = no_work
    cfg = preset("paper", dataset="synthetic", data_root=str(tmp / "data"), backbone="resnet18")
    path = soundclr.weights.imagenet_cache_path("resnet18")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"stand-in")                        # its contents are read when the model is built
    preflight(cfg, results=tmp / "results")


def test_a_missing_dataset_folder(no_work, capsys):
    tmp = no_work
    assert main(["train", "--dataset", "esc50", "--data-root", str(tmp / "nowhere"), "--backbone", "tiny",
                 "--weights", "none", "--results", str(tmp / "results")]) == 1
    err = capsys.readouterr().err
    assert "ESC-50 not found" in err and str(tmp / "nowhere" / "esc50") in err and "soundclr data download esc50" in err


def test_a_results_folder_that_cannot_be_written(no_work, capsys):
    tmp = no_work
    (tmp / "a-file").write_text("")
    args = ["train", "--preset", "quick", "--dataset", "synthetic", "--data-root", str(tmp / "data"),
            "--results", str(tmp / "a-file" / "results")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "cannot write results into" in err and "--results" in err
    assert not (tmp / "data").exists()
    cfg = preset("quick", dataset="synthetic", data_root=str(tmp / "data"))
    with pytest.raises(ResultsFolderError, match=r"results=\.\.\."):
        train_run(cfg, tmp / "a-file" / "results" / "run")


def test_the_book_checks_before_it_decodes(no_work, monkeypatch):
    from soundclr.book.reproduce import train_plan
    tmp = no_work
    (tmp / "a-file").write_text("")
    with pytest.raises(ResultsFolderError):
        train_plan("synthetic", "quick", size="tiny", device="cpu", results=str(tmp / "a-file" / "r"),
                   data_root=str(tmp / "data"), workers=1)
    assert not (tmp / "data").exists()


def test_bad_settings(no_work, capsys):
    tmp = no_work
    esc_tree(tmp / "data")
    common = ["train", "--dataset", "esc50", "--data-root", str(tmp / "data"), "--backbone", "tiny", "--weights", "none",
              "--results", str(tmp / "results"), "--folds", "1"]
    assert main([*common, "--batch-size", "64"]) == 2          # 2 training clips in fold 2
    assert "batch_size=64 is not valid" in capsys.readouterr().err
    assert main([*common, "--window", "triangle"]) == 2
    assert "window" in capsys.readouterr().err
    assert main([*common, "--batch-size", "2", "--val-fold", "2"]) == 2   # no training clip left
    capsys.readouterr()
    import torch
    if not torch.cuda.is_available():
        assert main([*common, "--batch-size", "2", "--device", "cuda"]) == 1
        err = capsys.readouterr().err
        assert "CUDA is not available" in err and "--device cpu" in err
    with pytest.raises(ValueError, match="batch_size=64"):
        preflight(preset("quick", dataset="esc50", data_root=str(tmp / "data"), batch_size=64, test_fold=1))


def test_a_bad_clip_speaks_the_interface(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SOUNDCLR_INTERFACE", raising=False)
    root = esc_tree(tmp_path / "data", bad="1-9-A-0.wav")
    assert main(["data", "prepare", "esc50", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "1-9-A-0.wav" in err and "--on-bad-file skip" in err and "on_bad_file" not in err
    assert main(["train", "--dataset", "esc50", "--data-root", str(root), "--backbone", "tiny", "--weights", "none",
                 "--results", str(tmp_path / "results"), "--folds", "1", "--batch-size", "2", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "--on-bad-file skip" in err and "on_bad_file" not in err
    with pytest.raises(DatasetError) as python:
        load_bank(preset("paper", dataset="esc50", data_root=str(root)), progress=False)
    assert 'pass on_bad_file="skip"' in str(python.value) and "--on-bad-file" not in str(python.value)
