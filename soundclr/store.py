"""The results store: ``results/<dataset>/<experiment>/<run>/``.

Each run folder holds ``config.json`` (the full configuration),
``metrics.jsonl`` (one line per epoch), ``summary.json`` (written last: its
presence means the run finished), ``model.pt`` (final weights) and
``outputs.pt`` (the final model's test-fold softmax, representations and
projections, for ensembles and UMAPs). Every file is written to a temporary
name and renamed, so a crash never leaves a file that looks complete.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from .config import Config


@contextmanager
def atomic_file(path: Path):
    """Open a temporary file next to ``path`` for writing; on success it is flushed, fsync'd
    and renamed over ``path``; on any error it is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_file(path) as f:
        f.write(data)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode())


def atomic_torch_save(path: Path, obj: Any) -> None:
    with atomic_file(path) as f:
        torch.save(obj, f)


def run_name(cfg: Config, variant: str | None = None) -> str:
    """``<scheme>-fold<k>-seed<s>[-<variant>]-<identity>``: the identity hash makes a
    changed configuration a new run instead of a stale 'finished' one."""
    r = cfg.run
    parts = [r.scheme, f"fold{r.test_fold}", f"seed{r.seed}"]
    if variant:
        parts.append(variant)
    parts.append(cfg.identity())
    return "-".join(parts)


def run_dir(results: Path, experiment: str, cfg: Config, variant: str | None = None) -> Path:
    return Path(results) / cfg.data.dataset / experiment / run_name(cfg, variant)


def is_finished(run: Path) -> bool:
    return (Path(run) / "summary.json").is_file()


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def read_metrics(run: Path) -> list[dict]:
    path = Path(run) / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


def load_config(run: Path) -> Config:
    path = Path(run) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: {run} is not a soundclr run folder (expected config.json, summary.json, model.pt)")
    return Config.from_dict(read_json(path)["config"])
