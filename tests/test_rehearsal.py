"""A rehearsal of the researcher's path (issue 17, item 4): `soundclr reproduce --dataset esc50
--preset paper --size tiny` on an ESC-50-layout tree, offline, with ImageNet weights "in the cache".

- The data: a tree laid out like the ESC-50 archive (``audio/<fold>-<src_file>-<take>-<target>.wav``,
  ``meta/esc50.csv`` with the real columns), the 50 real class names and targets, the real ESC-10
  subset, 5 folds, two short clips (0.5-1 s, 44.1 kHz, 16-bit) per class and fold (with one, a test
  fold has one clip per class and the representations page's silhouette score is undefined).
- The weights: a randomly initialised torchvision state dict saved under the file name torchvision's
  ImageNet weights have, in a temporary torch hub cache (``$TORCH_HOME/hub/checkpoints``), so the
  plan keeps Fig. 3's ImageNet bars and the Claims page tests C5a and C5b.
- The run: the CLI in a copy of the project (notebooks, book pages, library), so that the notebooks
  are written to the copy's ``book/generated/esc50`` and the book is built there, never in this
  checkout. The paper preset at the tiny size, on a smaller network and input so that it fits a
  2-core CPU: resnet18, 0.5-s clips at 8 kHz, 32 mel bands (the paper's other settings kept).
- The checks: every page builds; the Claims page has C5a and C5b as tested comparisons; and
  `make check-book`'s page checks pass (``real_book_problems`` without the convergence check:
  two-epoch runs are not converged).
"""
from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

# ESC-50's classes in target order (meta/esc50.csv of the archive), and ESC-10's ten of them.
ESC50_CLASSES = [
    "dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep", "crow",
    "rain", "sea_waves", "crackling_fire", "crickets", "chirping_birds", "water_drops", "wind", "pouring_water",
    "toilet_flush", "thunderstorm",
    "crying_baby", "sneezing", "clapping", "breathing", "coughing", "footsteps", "laughing", "brushing_teeth",
    "snoring", "drinking_sipping",
    "door_wood_knock", "mouse_click", "keyboard_typing", "door_wood_creaks", "can_opening", "washing_machine",
    "vacuum_cleaner", "clock_alarm", "clock_tick", "glass_breaking",
    "helicopter", "chainsaw", "siren", "car_horn", "engine", "train", "church_bells", "airplane", "fireworks",
    "hand_saw",
]
ESC10_CLASSES = {"dog", "rooster", "rain", "sea_waves", "crackling_fire", "crying_baby", "sneezing", "clock_tick",
                 "helicopter", "chainsaw"}
ESC50_COLUMNS = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]

# The paper preset, shrunk to fit a 2-core CPU: what a researcher with a small machine would set.
SMALL = dict(backbone="resnet18", sample_rate=8000, clip_seconds=0.5, n_fft=256, hop_length=256, n_mels=32,
             freq_mask_width=8, time_mask_width=8)


def write_esc50_tree(folder: Path, *, clips_per_class_per_fold: int = 2, folds: int = 5, rate: int = 44100,
                     seed: int = 0) -> int:
    """ESC-50's layout with short clips: each class a tone of its own in noise. Returns the clip count."""
    import soundfile as sf
    rng = np.random.default_rng(seed)
    (folder / "audio").mkdir(parents=True)
    (folder / "meta").mkdir()
    rows = []
    for fold in range(1, folds + 1):
        for target, category in enumerate(ESC50_CLASSES):
            for j in range(clips_per_class_per_fold):
                src = 100000 + 1000 * target + 10 * fold + j
                take = "ABC"[j % 3]
                name = f"{fold}-{src}-{take}-{target}.wav"
                n = int(rate * rng.uniform(0.5, 1.0))
                t = np.arange(n) / rate
                wave = 0.3 * np.sin(2 * np.pi * (100 + 60 * target) * t) + 0.05 * rng.standard_normal(n)
                sf.write(folder / "audio" / name, wave.astype(np.float32), rate, subtype="PCM_16")
                rows.append(dict(filename=name, fold=fold, target=target, category=category,
                                 esc10=str(category in ESC10_CLASSES), src_file=src, take=take))
    rows.sort(key=lambda r: r["filename"])
    with open(folder / "meta" / "esc50.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=ESC50_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def put_stand_in_imagenet_weights(torch_home: Path, backbone: str) -> Path:
    """A randomly initialised torchvision state dict where torchvision's ImageNet file is looked for."""
    import torch
    import torchvision

    from soundclr.weights import imagenet_weights
    path = torch_home / "hub" / "checkpoints" / os.path.basename(imagenet_weights(backbone).url)
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(getattr(torchvision.models, backbone)(weights=None).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rehearsal")
    site = tmp / "project"
    site.mkdir()
    for name in ("_config.yml", "_toc.yml", "references.bib"):
        shutil.copy(ROOT / name, site / name)
    ignore = shutil.ignore_patterns("generated", "__pycache__", "*.egg-info", ".ipynb_checkpoints")
    for name in ("book", "notebooks", "soundclr"):
        shutil.copytree(ROOT / name, site / name, ignore=ignore)
    data_root, results, torch_home = tmp / "data", tmp / "results", tmp / "torch"
    n = write_esc50_tree(data_root / "esc50")
    assert n == 500
    put_stand_in_imagenet_weights(torch_home, SMALL["backbone"])

    env = {**os.environ, "TORCH_HOME": str(torch_home), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": str(site)}
    cmd = [sys.executable, "-m", "soundclr", "reproduce", "--dataset", "esc50", "--preset", "paper", "--size", "tiny",
           "--device", "cpu", "--results", str(results), "--data-root", str(data_root)]
    for key, value in SMALL.items():
        cmd += ["--set", f"{key}={value}"]     # passed to the training workers and every notebook
    t0 = time.time()
    r = subprocess.run(cmd, cwd=site, env=env, capture_output=True, text=True)
    seconds = time.time() - t0
    log = r.stdout[-6000:] + r.stderr[-6000:]
    assert r.returncode == 0, log
    return site, results, log, seconds


@pytest.mark.slow
def test_the_paper_preset_on_an_esc50_tree_builds_every_page(rehearsal):
    import bookcheck
    from test_book import NOTEBOOK_PAGES, _article_text, real_book_problems

    from soundclr.analysis.claims import CLAIM_IDS
    site, results, log, seconds = rehearsal
    print(f"rehearsal: soundclr reproduce took {seconds:.0f} s")
    html = site / "_build" / "html"
    built = html / "book" / "generated" / "esc50"
    assert sorted(p.stem for p in built.glob("*.html")) == sorted(NOTEBOOK_PAGES), log

    # The plan saw the stand-in ImageNet weights: the ablation trained the ImageNet bars of Fig. 3.
    trained = {p.parent.name for p in results.rglob("summary.json")}
    assert any("imagenet-3ch" in name for name in trained) or any(
        "imagenet-3ch" in str(p) for p in results.rglob("summary.json")), sorted(trained)

    # The Claims page: C5a and C5b tested (not "not testable offline"), every claim present.
    text = _article_text(built / "claims.html")
    for cid in CLAIM_IDS:
        assert re.search(rf"\b{cid}\b", text), f"the Claims page lacks {cid}"
    for cid, after in (("C5a", "C5b"), ("C5b", "C6a")):
        row = text[re.search(rf"\b{cid}\b", text).start():re.search(rf"\b{after}\b", text).start()]
        assert "not testable" not in row and "points" in row, f"{cid} was not tested with the weights in the cache: {row}"
    assert "ImageNet weights are not in the torch hub cache" not in text

    # `make check-book`'s page checks, without convergence (two epochs), in Chromium when there is one.
    problems = real_book_problems(html, site / "book" / "generated", browser=bookcheck.find_chromium() is not None,
                                  convergence=False)
    open_problems = [p for p in problems if any(re.search(known, p) for known in OPEN)]
    if open_problems:
        print("rehearsal: open problems (see OPEN):\n" + "\n".join(open_problems))
    problems = [p for p in problems if p not in open_problems]
    assert problems == [], "\n".join(problems)


# What the rehearsal found that is not fixed yet: each pattern names one problem `make check-book` reports
# on this book. Remove a pattern when its fix lands. (Fixed: the raw "What this preset leaves out" line, the
# hand-written pages' links to the synthetic pages, the width of the Claims page's cost table.)
OPEN: list[str] = []
