"""Grids of runs and their aggregation into the paper's tables (Sec. IV-D/E).

A grid is dataset x scheme x test folds x seeds, plus named variants (sets of
overridden settings such as ``{"alpha": 0.25}`` or ``{"freq_masks": 0}``).
Each run lands in the results store (``soundclr.store``); finished runs are
skipped when a grid is run again, and a grid can be sharded across processes
or machines by run index (``shard=(i, n)`` runs the runs whose index is i mod n).

Aggregation reads the summaries into a pandas DataFrame and builds:
Table III (fold-averaged accuracy per scheme, mean +- std over seeds and the
best seed), Fig. 4 (per fold), Table IV ensembles (mean softmax of K seeds),
Fig. 5 (accuracy under white Gaussian noise), and the embeddings for UMAPs.
"""
from __future__ import annotations

import itertools
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import pandas as pd
import torch

from .config import Config
from .store import atomic_write_json, is_finished, load_config, read_json, read_metrics, run_dir


@dataclass(frozen=True)
class Run:
    config: Config
    directory: Path
    variant: str | None = None

    @property
    def finished(self) -> bool:
        return is_finished(self.directory)


def grid(cfg: Config, experiment: str = "main", *, schemes: Sequence[str] | None = None,
         folds: Sequence[int] | None = None, seeds: Sequence[int] = (0,),
         variants: dict[str, dict] | None = None, results: Path | str = "results") -> list[Run]:
    """The runs of a grid, in a fixed order (the order used for sharding).

    ``folds=None`` means every official fold of the dataset; ``schemes=None``
    the configuration's own scheme; ``variants`` maps a name to overrides.
    """
    schemes = list(schemes) if schemes else [cfg.run.scheme]
    folds = list(folds) if folds else list(range(1, cfg.n_folds + 1))
    variants = variants or {None: {}}
    runs = []
    for (vname, overrides), scheme, fold, seed in itertools.product(variants.items(), schemes, folds, seeds):
        c = cfg.override(**overrides)
        val = c.run.val_fold
        if val is not None and val == fold:
            val = fold % c.n_folds + 1  # the test fold cannot validate: the next fold does
        c = c.override(scheme=scheme, test_fold=fold, seed=seed, val_fold=val)
        runs.append(Run(c, run_dir(Path(results), experiment, c, vname), vname))
    return runs


def run_grid(runs: Iterable[Run], *, shard: tuple[int, int] = (0, 1), progress: bool = True, verbose: bool = True,
             bank=None, claims: bool = True, retry_failed: bool = False, log: Callable[[str], None] | None = None,
             wait: bool = False, poll_seconds: float = 5.0) -> list[dict]:
    """Train every unfinished run of this shard that no other worker holds; return the summaries
    of this shard's runs that are finished.

    With ``claims`` (the default) each run is claimed before it is trained
    (:mod:`soundclr.worker`), so any number of processes, on any number of machines, can
    run the same grid on one shared results folder and each run is trained once; a run
    whose worker died is taken over once its claim is stale (setting
    ``claim_stale_seconds``) and resumes from its checkpoint. Runs that failed before are
    skipped unless ``retry_failed``. ``progress`` shows a progress bar per run; ``verbose``
    prints one line per run; ``log`` receives a progress line every half minute of training.
    ``wait``: when other workers hold some of the runs, wait for them to finish (or to go
    stale, and then take them over) instead of returning without them; a notebook that needs
    every run of its grid waits this way.
    """
    runs = list(runs)
    summaries = _run_grid_once(runs, shard=shard, progress=progress, verbose=verbose, bank=bank, claims=claims,
                               retry_failed=retry_failed, log=log)
    if not wait:
        return summaries
    from .worker import read_claim
    index, count = shard
    mine = [r for i, r in enumerate(runs) if i % count == index]
    while True:
        pending = [r for r in mine if not r.finished]
        if not pending or not any(read_claim(r.directory) is not None for r in pending):
            break                      # done, or what is left failed: nothing to wait for
        time.sleep(poll_seconds)
        summaries = _run_grid_once(runs, shard=shard, progress=progress, verbose=False, bank=bank, claims=claims,
                                   retry_failed=retry_failed, log=log)
    return summaries


def _run_grid_once(runs: list[Run], *, shard, progress, verbose, bank, claims, retry_failed, log) -> list[dict]:
    from .data import load_bank
    from .train import distributed, train_run
    from .worker import ClaimLost, claim

    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard={shard} is not valid: expected (index, count) with 0 <= index < count")
    rank, world = distributed() if int(os.environ.get("WORLD_SIZE", "1")) > 1 else (0, 1)
    if rank == 0:
        write_manifest(runs)
    mine = [r for i, r in enumerate(runs) if i % count == index]
    say = print if verbose and rank == 0 else (lambda *a, **k: None)
    todo = [r for r in mine if not r.finished]
    if todo:      # what would stop the grid after the work has started: checked before any decoding
        from .train import preflight
        preflight([r.config for r in todo], results=todo[0].directory.parent, data=bank is None)
    where = f" in shard {index + 1} of {count}" if count > 1 else ""
    say(f"{len(mine)} runs{where}: {len(mine) - len(todo)} already finished, {len(todo)} to train", flush=True)
    banks: dict[tuple, object] = {}
    summaries = []
    for n, run in enumerate(mine, 1):
        if rank == 0 and not run.finished:
            _reuse_twin(run, say, f"[{n}/{len(mine)}]")
        if run.finished:
            summaries.append(read_json(run.directory / "summary.json"))
            continue
        held = None
        if claims:
            c = run.config.run
            held = claim(run.directory, stale_seconds=c.claim_stale_seconds, retry_failed=retry_failed,
                         epochs=run.config.total_epochs) \
                if rank == 0 else None
            if world > 1:
                decision = [held is not None]
                torch.distributed.broadcast_object_list(decision, src=0)
                if not decision[0]:
                    continue
            elif held is None:
                if run.finished:   # finished by another worker in the meantime
                    summaries.append(read_json(run.directory / "summary.json"))
                else:
                    say(f"[{n}/{len(mine)}] {run.directory.name}: {_why_skipped(run.directory)}", flush=True)
                continue
        key = (run.config.data.dataset, run.config.data.data_root, run.config.data.sample_rate)
        if bank is not None and bank.dataset == key[0] and bank.sample_rate == key[2]:
            banks[key] = bank
        if key not in banks:
            # under torchrun, train_run loads the bank itself: rank 0 decodes into the cache first
            banks[key] = None if world > 1 else load_bank(run.config, progress=progress)
        try:
            if held is not None:
                held.start_heartbeat()
            s = train_run(run.config, run.directory, bank=banks[key], progress=progress, log=log if rank == 0 else None,
                          on_epoch=_beat(held, world))
        except ClaimLost as lost:
            say(f"[{n}/{len(mine)}] {run.directory.name}: {lost}", flush=True)
            continue
        except Exception as error:
            if held is not None:
                held.fail(error)
            raise
        finally:
            if held is not None:
                held.release()   # after summary.json: the run is finished; or interrupted: another worker resumes it
        summaries.append(s)
        c = run.config.run
        say(f"[{n}/{len(mine)}] {c.scheme} fold {c.test_fold} seed {c.seed}{' ' + run.variant if run.variant else ''}: "
            f"final {100 * s['final']['test_acc']:.1f} % ({s['seconds']:.0f} s)", flush=True)
    return summaries


def _beat(held, world: int):
    if held is None:
        return None
    if world == 1:
        return held.beat

    def beat(row):   # under DDP every rank must go on together: a lost claim is only reported
        from .worker import ClaimLost
        try:
            held.beat(row)
        except ClaimLost as lost:
            print(f"warning: {lost}", flush=True)
    return beat


def _why_skipped(run_dir: Path) -> str:
    from .worker import FAILED, age, read_claim
    current = read_claim(run_dir)
    if current is not None:
        return (f"held by another worker ({current.get('host')}, pid {current.get('pid')}, heartbeat "
                f"{age(current):.0f} s ago): skipped")
    if (run_dir / FAILED).exists():
        error = read_json(run_dir / FAILED).get("error", "?")
        return f"failed before ({error}): skipped; retry with --retry-failed"
    return "skipped"


def _reuse_twin(run: Run, say, prefix: str) -> None:
    """The same computation, finished in another experiment: copy it instead of training it."""
    if run.directory.exists():
        return
    twin = finished_twin(run)
    if twin is None:
        return
    tmp = run.directory.with_name(f".{run.directory.name}.copying-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(twin, tmp, ignore=shutil.ignore_patterns("claim.json", ".claim.json.*", "noise.json"))
    try:
        os.rename(tmp, run.directory)
    except OSError:       # another worker created the folder meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
        return
    say(f"{prefix} {run.directory.name}: the same run is finished in {twin.parent.name}/, reused", flush=True)


MANIFEST = "grid.json"


def write_manifest(runs: Sequence[Run]) -> None:
    """Record the runs of a grid in ``<experiment>/grid.json`` (merged with what is there), so that
    ``soundclr status`` knows the runs that have not started yet."""
    by_folder: dict[Path, dict] = {}
    for run in runs:
        r = run.config.run
        by_folder.setdefault(run.directory.parent, {})[run.directory.name] = {
            "scheme": r.scheme, "fold": r.test_fold, "seed": r.seed, "variant": run.variant,
            "epochs": run.config.total_epochs}
    for folder, entries in by_folder.items():
        path = folder / MANIFEST
        try:
            known = read_json(path).get("runs", {}) if path.exists() else {}
        except ValueError:
            known = {}   # a damaged manifest is only an index: rebuilt from this grid
        if any(name not in known for name in entries):
            atomic_write_json(path, {"runs": {**known, **entries}})


def finished_twin(run: Run) -> Path | None:
    """A finished run of the same configuration (same identity: every setting, scheme, fold and
    seed) in another experiment folder of the same results store, if there is one."""
    results = run.directory.parents[2]
    identity = run.config.identity()
    for summary in sorted(results.glob(f"{run.config.data.dataset}/*/*-{identity}/summary.json")):
        if summary.parent != run.directory and read_json(summary).get("identity") == identity:
            return summary.parent
    return None


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
            "epochs_run": s["epochs"], "seconds": s["seconds"], "run_dir": str(run)}


def load_metrics(df: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch metrics of every run in ``df`` (learning curves)."""
    frames = []
    for _, row in df.iterrows():
        m = pd.DataFrame(read_metrics(Path(row["run_dir"])))
        for key in ("scheme", "fold", "seed", "variant", "run_dir"):
            m[key] = row[key]
        frames.append(m)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


SCHEME_ORDER = ["ce", "supcon", "hybrid"]
SCHEME_LABEL = {"ce": "Cross-entropy", "supcon": "SupCon, two stages", "hybrid": "Hybrid (SoundCLR)"}


def _ordered(df: pd.DataFrame, column: str = "scheme") -> pd.DataFrame:
    order = {s: i for i, s in enumerate(SCHEME_ORDER)}
    return df.sort_values(column, key=lambda c: c.map(order)) if column in df else df


# -- Table III and Fig. 4 ---------------------------------------------------------------------
def scheme_table(df: pd.DataFrame, metric: str = "final_acc", by: str = "scheme") -> pd.DataFrame:
    """Table III: per scheme, the fold-averaged accuracy of each seed, then mean, std
    over seeds and the best seed (in %)."""
    per_seed = df.groupby([by, "seed"])[metric].mean().mul(100).reset_index()
    table = per_seed.groupby(by)[metric].agg(mean="mean", std="std", best="max", seeds="count").reset_index()
    table["std"] = table["std"].fillna(0.0)
    folds = df.groupby(by)["fold"].nunique().rename("folds")
    return _ordered(table.merge(folds, on=by), by).reset_index(drop=True)


def confusion(df: pd.DataFrame) -> tuple[torch.Tensor, list[str]]:
    """The summed final-epoch confusion matrix of the runs in ``df`` (rows: true class)."""
    total, names = None, None
    for run in df["run_dir"]:
        s = read_json(Path(run) / "summary.json")
        m = torch.tensor(s["confusion"])
        total = m if total is None else total + m
        names = s["class_names"]
    return total, names


# -- Table IV: ensembles --------------------------------------------------------------------------
def ensemble_table(df: pd.DataFrame, k: int | None = None) -> pd.DataFrame:
    """Per scheme: the fold-averaged accuracy of an ensemble of ``k`` seeds (mean of their
    final softmax outputs on the test fold), next to the mean single-model accuracy (in %)."""
    rows = []
    for scheme, sdf in df.groupby("scheme"):
        accs, singles, members = [], [], []
        for fold, fdf in sdf.groupby("fold"):
            fdf = fdf.sort_values("seed").head(k) if k else fdf
            outs = [torch.load(Path(r) / "outputs.pt", weights_only=False) for r in fdf["run_dir"]]
            probs = torch.stack([o["probs"] for o in outs]).mean(0)
            labels = outs[0]["labels"]
            accs.append((probs.argmax(-1) == labels).float().mean().item())
            singles.append(fdf["final_acc"].mean())
            members.append(len(outs))
        rows.append({"scheme": scheme, "single": 100 * sum(singles) / len(singles),
                     "ensemble": 100 * sum(accs) / len(accs), "members": min(members), "folds": len(accs)})
    return _ordered(pd.DataFrame(rows)).reset_index(drop=True)


# -- Fig. 5: robustness to white noise ----------------------------------------------------------
def noise_accuracy(run: Path | str, stds: Sequence[float] = (0.0, 1e-4, 5e-4, 1e-3), *, bank=None,
                   device: str = "auto", seed: int = 0) -> dict[float, float]:
    """Accuracy of a finished run's final model on its test fold with white Gaussian
    noise of each standard deviation added to each test clip after its silence trim and
    pad/crop (so that only the noise differs from the clean clip), evaluated exactly as
    the run's final epoch was (same pipeline, batches and precision: std 0 gives the run's
    final accuracy). ``seed`` draws the noise. Cached in ``noise.json``."""
    acc = noise_accuracies(run, stds, (seed,), bank=bank, device=device)
    return {s: acc[(s, seed)] for s in stds}


def noise_accuracies(run: Path | str, stds: Sequence[float], seeds: Sequence[int], *, bank=None,
                     device: str = "auto") -> dict[tuple[float, int], float]:
    """:func:`noise_accuracy` for every (std, noise seed) pair, the model and data loaded once."""
    from .augment import Pipeline
    from .data import load_bank
    from .train import check_bank, evaluate, resolve_device, uses_bf16

    run = Path(run)
    cache_path = run / "noise.json"
    try:
        cache = read_json(cache_path) if cache_path.exists() else {}
    except ValueError:       # a damaged cache is only a cache: compute it again
        cache = {}
    def key(s: float, seed: int) -> str:
        return f"{s:g}:{seed if s else 0}"      # without noise the draw does not matter
    missing = list(dict.fromkeys((s, seed if s else 0) for seed in seeds for s in stds if key(s, seed) not in cache))
    if missing:
        cfg = load_config(run).override(device=device).resolved()
        dev = resolve_device(device)
        model = load_model(run, dev)
        bank = bank if bank is not None else load_bank(cfg, progress=False)
        check_bank(bank, cfg)
        pipeline = Pipeline(cfg.features, cfg.augment, cfg.data.sample_rate, cfg.data.clip_samples, seed=cfg.run.seed).to(dev)
        test = bank.split(cfg.run.test_fold).test
        model = model.to(memory_format=torch.channels_last)      # as in training: the same kernels, the same numbers
        if dev.type == "cuda":
            bank = bank.to(dev)
        for s, seed in missing:
            res = evaluate(model, pipeline, bank, test, dev, noise_std=s, noise_seed=seed, outputs=False,
                           batch_size=max(cfg.optim.batch_size * 2, 64), autocast=uses_bf16(cfg, dev))
            cache[key(s, seed)] = res["accuracy"]
        atomic_write_json(cache_path, cache)
    return {(s, seed): cache[key(s, seed)] for seed in seeds for s in stds}


def noise_table(df: pd.DataFrame, stds: Sequence[float] = (0.0, 1e-4, 5e-4, 1e-3), *, bank=None,
                device: str = "auto") -> pd.DataFrame:
    """Fig. 5: accuracy (in %) per scheme and noise level, averaged over folds and seeds."""
    rows = []
    for _, row in df.iterrows():
        for s, acc in noise_accuracy(row["run_dir"], stds, bank=bank, device=device).items():
            rows.append({"scheme": row["scheme"], "noise_std": s, "accuracy": 100 * acc})
    t = pd.DataFrame(rows).groupby(["scheme", "noise_std"])["accuracy"].mean().unstack("noise_std")
    return t.loc[[s for s in SCHEME_ORDER if s in t.index]]


# -- models and embeddings ------------------------------------------------------------------------
def load_model(run: Path | str, device: str | torch.device = "cpu"):
    """The final model of a finished run, in eval mode."""
    from .model import build_model

    run = Path(run)
    path = run / "model.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: the run in {run} has not finished (train it with `soundclr train`) "
                                "or the folder is not a soundclr run")
    cfg = load_config(run).override(weights="none")  # the saved state dict holds every weight
    blob = torch.load(path, map_location=device, weights_only=False)
    model = build_model(cfg, blob["n_classes"])
    model.load_state_dict(blob["state_dict"])
    return model.to(device).eval()


def embeddings(run: Path | str) -> dict[str, torch.Tensor]:
    """The final model's test-fold ``representation`` (h), ``projection`` (z), ``labels``
    and ``probs``, saved at the end of training."""
    return torch.load(Path(run) / "outputs.pt", weights_only=False)
