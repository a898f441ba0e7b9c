"""The results store: ``results/<dataset>/<experiment>/<run>/``, one folder per run.

A :class:`Run` is one entry of a grid (its configuration, experiment, results folder and variant);
its folder is named ``<scheme>-fold<k>-seed<s>[-<variant>]-<identity>``, where the identity hash
makes a changed configuration a new run instead of a stale "finished" one. :func:`frame` and
:func:`load_summaries` read finished runs into a pandas DataFrame, :func:`load_metrics` their
per-epoch rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..config import Config
from ..files import read_json
from ..train.record import is_finished, load_config, read_metrics


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


# -- reading the store ------------------------------------------------------------------------
def load_summaries(results: Path | str = "results", dataset: str | None = None,
                   experiment: str | None = None) -> pd.DataFrame:
    """One row per finished run: dataset, experiment, variant, scheme, fold, seed,
    ``final_acc`` (headline), ``best_test_acc`` / ``best_test_epoch`` (the paper's
    protocol), ``best_val_test_acc`` (validation protocol), the run folder and
    every setting of its configuration."""
    pattern = f"{dataset or '*'}/{experiment or '*'}/*/summary.json"
    return pd.DataFrame([_summary_row(p.parent) for p in sorted(Path(results).glob(pattern))])


def frame(runs: Sequence[Run]) -> pd.DataFrame:
    """The summaries of exactly these runs (the finished ones), as ``load_summaries`` rows."""
    return pd.DataFrame([_summary_row(r.directory) for r in runs if r.finished])


def _summary_row(run: Path) -> dict:
    s = read_json(run / "summary.json")
    flat = {k: v for sec in load_config(run).to_dict().values() for k, v in sec.items()}
    parts = run.name.split("-")  # <scheme>-fold<k>-seed<s>[-<variant>]-<identity>
    bov = s.get("best_on_validation") or {}
    return {**flat, "dataset": s["dataset"], "experiment": run.parent.name, "variant": "-".join(parts[3:-1]) or None,
            "scheme": s["scheme"], "fold": s["test_fold"], "seed": s["seed"],
            "final_acc": s["final"]["test_acc"], "best_test_acc": s["best_on_test"]["test_acc"],
            "best_test_epoch": s["best_on_test"]["epoch"], "best_val_test_acc": bov.get("test_acc"),
            "epochs_run": s["epochs"], "seconds": s["seconds"], "n_test": s.get("n_test"), "run_dir": str(run)}


def load_metrics(df: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch metrics of every run in ``df`` (learning curves)."""
    frames = []
    for _, row in df.iterrows():
        m = pd.DataFrame(read_metrics(Path(row["run_dir"])))
        for key in ("scheme", "fold", "seed", "variant", "run_dir"):
            m[key] = row[key]
        frames.append(m)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


@dataclass(frozen=True)
class Run:
    config: Config
    directory: Path
    variant: str | None = None

    @property
    def finished(self) -> bool:
        return is_finished(self.directory)
