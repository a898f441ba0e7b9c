"""Grids of runs: dataset x scheme x test folds x seeds, plus named variants (sets of overridden
settings such as ``{"alpha": 0.25}``).

Each run lands in the results store (:mod:`soundclr.runs.store`); finished runs are skipped when a
grid is run again; a run finished in another experiment with the same configuration is copied
(:func:`finished_twin`); a grid can be sharded by run index (``shard=(i, n)``), and any number of
workers can share one grid through the run leases (:mod:`soundclr.runs.lease`).
"""
from __future__ import annotations

import errno

import itertools
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch

from ..config import Config
from ..data.bank import load_bank
from ..data.layouts import dataset_folder
from ..files import atomic_write_json, read_json
from ..train.checks import preflight
from ..train.loop import train_run
from ..train.runtime import distributed
from .lease import FAILED, LeaseLost, age, read_lease, take_lease
from .store import Run, run_dir


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


NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


class DiskFull(RuntimeError):
    """A run stopped because its results folder's device is full (or over quota); it resumes once space returns."""


def run_grid(runs: Iterable[Run], *, shard: tuple[int, int] = (0, 1), progress: bool = True, verbose: bool = True,
             bank=None, leases: bool = True, retry_failed: bool = False, log: Callable[[str], None] | None = None,
             wait: bool = False, poll_seconds: float = 5.0) -> list[dict]:
    """Train every unfinished run of this shard that no other worker holds; return the summaries
    of this shard's runs that are finished.

    With ``leases`` (the default) each run is leased before it is trained
    (:mod:`soundclr.runs.lease`), so any number of processes, on any number of machines, can
    run the same grid on one shared results folder and each run is trained once; a run
    whose worker died is taken over once its lease is stale (setting
    ``lease_stale_seconds``) and resumes from its checkpoint. Runs that failed before are
    skipped unless ``retry_failed``. ``progress`` shows a progress bar per run; ``verbose``
    prints one line per run; ``log`` receives a progress line every half minute of training.
    ``wait``: when other workers hold some of the runs, wait for them to finish (or to go
    stale, and then take them over) instead of returning without them; a notebook that needs
    every run of its grid waits this way.
    """
    runs = list(runs)
    summaries = _run_grid_once(runs, shard=shard, progress=progress, verbose=verbose, bank=bank, leases=leases,
                               retry_failed=retry_failed, log=log)
    if not wait:
        return summaries
    index, count = shard
    mine = [r for i, r in enumerate(runs) if i % count == index]
    while True:
        pending = [r for r in mine if not r.finished]
        if not pending:
            return summaries
        held = any(read_lease(r.directory) is not None for r in pending)
        if held:
            time.sleep(poll_seconds)
        summaries = _run_grid_once(runs, shard=shard, progress=progress, verbose=False, bank=bank, leases=leases,
                                   retry_failed=retry_failed, log=log)
        if not held:
            return summaries           # one pass over runs no one held: what is left failed, nothing to wait for


def _run_grid_once(runs: list[Run], *, shard, progress, verbose, bank, leases, retry_failed, log) -> list[dict]:

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
        preflight([r.config for r in todo], results=todo[0].directory.parent, data=bank is None)
    where = f" in shard {index + 1} of {count}" if count > 1 else ""
    say(f"{len(mine)} runs{where}: {len(mine) - len(todo)} already finished, {len(todo)} to train", flush=True)
    banks: dict[tuple, object] = {}
    summaries = []
    for n, run in enumerate(mine, 1):
        if rank == 0 and not run.finished:
            reuse_twin(run, say, f"[{n}/{len(mine)}]")
        if run.finished:
            summaries.append(read_json(run.directory / "summary.json"))
            continue
        held = None
        if leases:
            c = run.config.run
            held = take_lease(run.directory, stale_seconds=c.lease_stale_seconds, retry_failed=retry_failed,
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
        # the dataset's folder, not only its name: each synthetic draw has its own clips (a worker training runs of
        # several draws once trained them all on the first draw's bank)
        key = (run.config.data.dataset, str(dataset_folder(run.config).resolve()), run.config.data.sample_rate)
        if bank is not None and bank.dataset == key[0] and bank.sample_rate == key[2] and bank.folder in ("", key[1]):
            banks[key] = bank
        if key not in banks:
            # under torchrun, train_run loads the bank itself: rank 0 decodes into the cache first
            banks[key] = None if world > 1 else load_bank(run.config, progress=progress)
        try:
            if held is not None:
                held.start_heartbeat()
            s = train_run(run.config, run.directory, bank=banks[key], progress=progress, log=log if rank == 0 else None,
                          on_epoch=_beat(held, world))
        except LeaseLost as lost:
            say(f"[{n}/{len(mine)}] {run.directory.name}: {lost}", flush=True)
            continue
        except OSError as error:
            if error.errno not in NO_SPACE:
                if held is not None:
                    held.fail(error)
                raise
            # not the run's fault: no failed.json (the rerun must not skip it); the lease is released below
            raise DiskFull(f"no space left on the device while writing {error.filename or 'a file'} of "
                           f"{run.directory}: the run stopped after its last complete checkpoint, which is intact. "
                           "Free some space and run the same command again: the run resumes from that checkpoint") from error
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

    def beat(row):   # under DDP every rank must go on together: a lost lease is only reported
        try:
            held.beat(row)
        except LeaseLost as lost:
            print(f"warning: {lost}", flush=True)
    return beat


def _why_skipped(run_dir: Path) -> str:
    current = read_lease(run_dir)
    if current is not None:
        return (f"held by another worker ({current.get('host')}, pid {current.get('pid')}, heartbeat "
                f"{age(current):.0f} s ago): skipped")
    if (run_dir / FAILED).exists():
        error = read_json(run_dir / FAILED).get("error", "?")
        return f"failed before ({error}): skipped; retry with --retry-failed"
    return "skipped"


def reuse_twin(run: Run, say, prefix: str) -> None:
    """The same computation, finished in another experiment: copy it instead of training it."""
    if run.directory.exists():
        return
    twin = finished_twin(run)
    if twin is None:
        return
    tmp = run.directory.with_name(f".{run.directory.name}.copying-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(twin, tmp, ignore=shutil.ignore_patterns("lease.json", ".lease.json.*", "noise.json"))
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
