"""A run's record on disk: ``config.json`` (the configuration), ``metrics.jsonl`` (one line per
epoch), ``summary.json`` (written last: its presence means the run finished, :func:`is_finished`),
``model.pt`` and ``outputs.pt``, and the provenance of a result (versions, device, commit, host).
"""
from __future__ import annotations

import json
import math
import platform
import subprocess
import time
from pathlib import Path

import torch
import torchaudio
import torchvision

from .. import __version__, schemes
from ..config import Config
from ..files import SOURCE_ROOT, CorruptFileError, read_json
from .evaluation import confusion_matrix


def provenance(device: torch.device | str | None = None) -> dict:
    """What produced a result: library versions, the device, the git commit of the code (when it
    runs from a repository) and the host."""


    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine() or "cpu"
    commit = None
    root = SOURCE_ROOT
    if (root / ".git").exists():
        try:
            r = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
            if r.returncode == 0:
                commit = r.stdout.strip()
                dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "soundclr"],
                                       capture_output=True, text=True, timeout=10).stdout.strip()
                commit += "+modified" if dirty else ""
        except (OSError, subprocess.SubprocessError):
            commit = None
    return {"soundclr": __version__, "torch": torch.__version__, "torchaudio": torchaudio.__version__,
            "torchvision": torchvision.__version__, "python": platform.python_version(),
            "device": f"{device.type if device is not None else 'cpu'}: {name}", "git_commit": commit,
            "host": platform.node()}


def summary(cfg: Config, rows: list[dict], final: dict, bank, *, stage2_start_epoch: int | None = None,
            started: float | None = None, device: torch.device | None = None) -> dict:
    """The run's ``summary.json``: its keys, the accuracy under each protocol, the confusion matrix and provenance."""
    evaluated = [m for m in rows if m.get("test_acc") is not None]
    best = max(evaluated, key=lambda m: (m["test_acc"], -m["epoch"]))
    two_stage = schemes.get(cfg.run.scheme).two_stage
    start = cfg.optim.stage2_start if two_stage else None
    final_protocol = "the final epoch's accuracy on the test fold (our headline)"
    if start == "best_test":
        final_protocol += ("; stage 2 started from the stage-1 epoch with the lowest SupCon loss on the test fold "
                           "(the released code's rule: the test fold chose that checkpoint)")
    elif start == "best_val":
        final_protocol += "; stage 2 started from the stage-1 epoch with the lowest SupCon loss on the validation fold"
    out = {
        "dataset": cfg.data.dataset, "scheme": cfg.run.scheme, "test_fold": cfg.run.test_fold,
        "val_fold": cfg.run.val_fold, "seed": cfg.run.seed, "identity": cfg.identity(),
        "epochs": len(rows),
        "final": {"test_acc": final["accuracy"], "epoch": rows[-1]["epoch"], "protocol": final_protocol},
        "best_on_test": {"test_acc": best["test_acc"], "epoch": best["epoch"],
                         "protocol": "the paper's: the best epoch selected on the test fold itself (optimistic)"},
        "best_on_validation": None,
        "stage2_start": None if not two_stage else {
            "rule": start, "epoch": stage2_start_epoch},
        "n_test": len(final["labels"]),
        "class_names": list(bank.class_names),
        "confusion": confusion_matrix(final["labels"], final["predictions"], bank.n_classes),
        "seconds": sum(m["seconds"] for m in rows),
        "wall_seconds": (time.time() - started) if started is not None else None,
        "provenance": provenance(device),
    }
    with_val = [m for m in evaluated if m.get("val_acc") is not None]
    if with_val:
        sel = max(with_val, key=lambda m: (m["val_acc"], -m["epoch"]))
        out["best_on_validation"] = {"test_acc": sel["test_acc"], "val_acc": sel["val_acc"], "epoch": sel["epoch"],
                                     "protocol": "epoch selected on the validation fold, reported on the test fold"}
    if not math.isfinite(rows[-1]["train_loss"]):
        out["warning"] = "the training loss is not finite: lower the learning rate"
    return out


def is_finished(run: Path) -> bool:
    return (Path(run) / "summary.json").is_file()


def read_metrics(run: Path) -> list[dict]:
    """The rows of ``<run>/metrics.jsonl`` (one JSON object per epoch); ``[]`` when there is none yet.

    The file is always rewritten whole (atomically), never appended to, so
    any line that is not a JSON object (a torn last line included) means it
    was damaged: CorruptFileError names the file and the line.
    """
    path = Path(run) / "metrics.jsonl"
    if not path.exists():
        return []
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise CorruptFileError(path, "is not UTF-8 text (binary garbage)", line=line) from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()   # what follows the final newline
    rows = []
    for number, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
        except ValueError as err:
            what = "is empty" if not line.strip() else f"is not valid JSON ({getattr(err, 'msg', err)})"
            raise CorruptFileError(path, f"{what}: expected one JSON object per epoch", line=number) from None
        if not isinstance(row, dict):
            raise CorruptFileError(path, f"holds {type(row).__name__} {line.strip()[:40]!r}: expected one JSON "
                                         f"object per epoch", line=number)
        rows.append(row)
    return rows


def load_config(run: Path) -> Config:
    path = Path(run) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: {run} is not a soundclr run folder (expected config.json, summary.json, model.pt)")
    record = read_json(path)
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise CorruptFileError(path, "is valid JSON but holds no 'config' object")
    return Config.from_dict(record["config"])
