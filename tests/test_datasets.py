"""The dataset registry (issue 26): every registered dataset's record agrees with its layout and its download
source; a folder of your own in ESC-50's layout is registered from its files alone, and runs end to end (training
with workers, the Results page) with one flag and no code; bad folders are clear errors."""
import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from soundclr import datasets, preset
from soundclr.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", datasets.names())
def test_every_registered_dataset_verifies(name):
    """Its folds, fold sizes and clip length agree; its layout is the one its download source fills; its
    defaults reach the configuration."""
    d = datasets.get(name)
    assert len(d.fold_sizes) == d.n_folds and all(n > 0 for n in d.fold_sizes)
    assert d.columns.fold == "fold" and len(set(d.columns.names())) == 4
    src = (datasets.get(d.subset_of) if d.subset_of else d).download
    if src is not None:
        assert (src.metadata, src.file_column, src.fold_folders) == (d.metadata, d.columns.file, d.fold_folders)
        if not d.subset_of:
            assert sum(d.fold_sizes) == src.n_clips
            assert src.clip_seconds in (None, d.clip_seconds)
    cfg = preset("paper", dataset=name).resolved()
    assert (cfg.n_folds, cfg.data.clip_seconds, cfg.optim.lr) == (d.n_folds, d.clip_seconds, d.lr)
    assert d.paper == (name in datasets.PAPER_DATASETS)


def test_the_papers_values_are_the_records():
    """The values the paper and its code give (Sec. IV-A; the released code's learning rates)."""
    got = {n: (datasets.get(n).n_folds, datasets.get(n).clip_seconds, datasets.get(n).lr) for n in datasets.PAPER_DATASETS}
    assert got == {"esc50": (5, 5.0, 5e-4), "esc10": (5, 5.0, 5e-4), "us8k": (10, 4.0, 1e-4)}


def own_folder(synthetic_root: Path, where: Path, folds: int = 3, name: str = "Birds at dawn") -> Path:
    """A dataset of a user's own in ESC-50's layout, from the synthetic clips of ``folds`` folds: meta/dawn.csv
    (the four columns, no esc10) and audio/ (links to the clips)."""
    folder = where / name
    (folder / "audio").mkdir(parents=True)
    (folder / "meta").mkdir()
    with open(synthetic_root / "synthetic" / "meta" / "esc50.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["fold"]) <= folds]
    with open(folder / "meta" / "dawn.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["filename", "fold", "target", "category"], extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    for r in rows:
        os.symlink(synthetic_root / "synthetic" / "audio" / r["filename"], folder / "audio" / r["filename"])
    return folder


def test_a_folder_in_esc50s_layout_is_a_dataset(synthetic_root, tmp_path):
    import soundfile
    folder = own_folder(synthetic_root, tmp_path)
    d = datasets.register_folder(folder)
    assert d.name == "birds-at-dawn" and d.title == "Birds at dawn" and d.n_folds == 3 and not d.paper
    assert d.fold_sizes == (80, 80, 80)
    longest = max(soundfile.info(str(p)).duration for p in (folder / "audio").iterdir())
    assert d.clip_seconds == pytest.approx(longest, abs=1e-3)
    assert str(folder.resolve()) in os.environ[datasets.FOLDER_ENV]       # the processes it starts register it too
    from soundclr.data.bank import load_bank
    bank = load_bank(preset("quick", dataset=d.name, data_root=str(tmp_path / "anywhere")))
    assert len(bank) == 240 and bank.fold_ids == [1, 2, 3] and bank.n_classes == 10
    cfg = preset("quick", dataset=d.name)
    with pytest.raises(ConfigError, match="test_fold=4 is not valid.*folds 1..3"):
        cfg.override(test_fold=4)
    # its metadata's contents identify its runs: an edited CSV trains again
    before = cfg.identity()
    (folder / "meta" / "dawn.csv").write_text((folder / "meta" / "dawn.csv").read_text().replace("dog", "hound"))
    datasets.register_folder(folder)
    assert preset("quick", dataset=d.name).identity() != before


def test_bad_folders_are_clear_errors(synthetic_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        datasets.register_folder(tmp_path / "nowhere")
    folder = own_folder(synthetic_root, tmp_path, name="two")
    shutil.copy(folder / "meta" / "dawn.csv", folder / "meta" / "other.csv")
    with pytest.raises(ValueError, match="expected one metadata CSV.*dawn.csv, other.csv"):
        datasets.register_folder(folder)
    (folder / "meta" / "other.csv").unlink()
    text = (folder / "meta" / "dawn.csv").read_text()
    (folder / "meta" / "dawn.csv").write_text(text.replace("category", "label", 1))
    with pytest.raises(ValueError, match="wrong columns.*missing category"):
        datasets.register_folder(folder)
    (folder / "meta" / "dawn.csv").write_text(text.replace(",2,", ",4,"))
    with pytest.raises(ValueError, match=r"folds should run 1..K.*\[1, 3, 4\]"):
        datasets.register_folder(folder)
    (folder / "meta" / "dawn.csv").write_text(text)
    next((folder / "audio").iterdir()).unlink()
    with pytest.raises(ValueError, match="cannot read .*audio"):
        datasets.register_folder(folder)
    with pytest.raises(ConfigError, match="dataset='nope' is not valid.*--dataset-folder DIR"):
        preset("quick", dataset="nope")


@pytest.mark.slow
def test_a_folder_of_your_own_runs_end_to_end_with_one_flag(synthetic_root, tmp_path):
    """`soundclr train --dataset-folder DIR` with two workers (which register the folder from the environment),
    `reproduce --dataset-folder DIR --train-only` for the book's tiny grids, then the Results page on it: Table
    III's rows, and Table IV split into the published table and this build's rows."""
    folder = own_folder(synthetic_root, tmp_path)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop(datasets.FOLDER_ENV, None)
    results = tmp_path / "r"
    base = [sys.executable, "-m", "soundclr"]
    r = subprocess.run(base + ["train", "--dataset-folder", str(folder), "--preset", "quick", "--schemes", "ce,hybrid",
                               "--folds", "1,2", "--seeds", "0", "--epochs", "2", "--workers", "2", "--quiet",
                               "--results", str(results)], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "dataset 'birds-at-dawn'" in r.stderr and "240 clips in 3 folds" in r.stderr
    assert len(list((results / "birds-at-dawn" / "main").glob("*/summary.json"))) == 4
    r = subprocess.run(base + ["reproduce", "--dataset-folder", str(folder), "--size", "tiny", "--device", "cpu",
                               "--workers", "2", "--train-only", "--results", str(results)],
                       capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    r = subprocess.run(base + ["train", "--dataset-folder", str(folder), "--dataset", "esc50", "--results", str(results)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and "give one of them" in r.stderr, r.stderr

    from soundclr.book.reproduce import run_notebooks
    datasets.register_folder(folder)
    out = tmp_path / "pages"
    run_notebooks("birds-at-dawn", "quick", size="tiny", device="cpu", results=str(results), data_root=str(tmp_path),
                  only=["results"], out_dir=out)
    import nbformat
    nb = nbformat.read(out / "results.ipynb", as_version=4)
    assert nb.cells[0].source.startswith("# ") and "Birds at dawn" in nb.cells[0].source.splitlines()[0]
    shown = "\n".join(str(o.get("data", {}).get("text/markdown", "")) + str(o.get("data", {}).get("text/html", ""))
                      for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "Hybrid (SoundCLR)" in shown and "Table IV as published" in shown
