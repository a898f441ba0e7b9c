"""The ``soundclr`` command line (also ``python -m soundclr``).

    soundclr data download esc50|esc10|us8k --root data
    soundclr data prepare esc50 --root data           decode once into the cache
    soundclr train --dataset esc50 --preset paper --schemes ce,supcon,hybrid --folds 1,2,3,4,5 --seeds 0,1,2,3,4
    soundclr status --results results                  finished / running / stale / failed / to do, and an ETA
    soundclr slurm --workers 8 --partition gpu --submit -- --dataset esc50 --preset paper ...
    soundclr evaluate results/esc50/main/<run> [--noise 1e-4,5e-4,1e-3]
    soundclr predict clip.wav --checkpoint results/esc50/main/<run>
    soundclr reproduce --dataset esc50 --preset paper  every notebook with papermill, then the book

Every setting of the configuration (``soundclr/config.py``) is a flag of
``train``: ``--lr 1e-3 --freq-masks 0 --window hann``. Any number of ``train``
processes (or SLURM array tasks) can run the same grid on one results folder:
each run is leased by one of them (``soundclr.runs.lease``); ``train --workers N`` starts
N such processes itself. Every process takes its share of the machine's cores (the
processes that train on one host count each other; ``OMP_NUM_THREADS`` wins). Under
``torchrun`` the same ``train`` command trains one run with DistributedDataParallel.
Before any decoding or training, ``train`` checks the settings, the results folder,
the dataset's folder and the weights (``soundclr.train.checks``).

Exit status: 0 on success, 1 when the work failed (the error in one line), 2 for
a usage error (an unknown flag or an invalid setting), 130 after Ctrl-C and 143
after SIGTERM (a run in progress resumes from its checkpoint next time).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .analysis.planning import plan_report, report_text
from .book.plan import plan_schemes
from .book.reproduce import check_settings, parse_set, reproduce, train_plan
from .cli_parser import build_parser
from .config import ConfigError, preset
from .data.bank import load_bank
from .datasets import get as dataset_record
from .datasets import register_folder
from .data.fetch import download
from .files import read_json
from .runs.grid import grid
from .runs.inference import noise_accuracy, predict_file
from .runs.lease import FAILED, holder_gone, read_lease
from .runs.pool import train_in_processes, work
from .runs.slurm import sbatch_script, submit, write_script
from .runs.status import format_status, status
from .runs.threads import fit_threads
from .schemes import load_plugins
from .train.checks import preflight
from .train.runtime import Terminated, sigterm_raises

# The library's own error classes, reported in one line (by name: importing their modules is slow).
RUNTIME_ERRORS = ("DatasetError", "DownloadError", "WeightsError", "NotebookError", "CorruptFileError", "SlurmError")
# The commands whose settings are flags: their error messages spell a setting as its flag (soundclr.data.setting_spelling).
FLAG_COMMANDS = ("train", "data")


def _config_from_args(args):
    settings = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}
    return preset(args.preset, **settings)


def _use_dataset_folder(args) -> None:
    """Register ``--dataset-folder`` and make it the command's dataset; a different --dataset beside it is a usage error."""
    record = register_folder(args.dataset_folder)
    attr = {"train": "cfg_dataset", "reproduce": "dataset", "data": "name"}[args.command]
    given = getattr(args, attr, None)
    if given not in (None, record.name):
        raise ConfigError(f"--dataset-folder {args.dataset_folder} is the dataset {record.name!r}, but the dataset "
                          f"{given!r} is given too: give one of them")
    setattr(args, attr, record.name)
    print(f"soundclr: dataset {record.name!r} from {record.folder}: {sum(record.fold_sizes)} clips in {record.n_folds} "
          f"folds ({', '.join(map(str, record.fold_sizes))}), clips of {record.clip_seconds:g} s", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if getattr(args, "plugin", None):
        try:
            load_plugins(args.plugin)       # before any configuration names a scheme (and for the workers it starts)
        except (FileNotFoundError, ValueError, TypeError, SyntaxError, ImportError) as err:
            print(f"soundclr: error: --plugin: {type(err).__name__}: {err}", file=sys.stderr)
            return 2
    if getattr(args, "dataset_folder", None):
        try:
            _use_dataset_folder(args)      # before any configuration names it (and for the workers and kernels it starts)
        except (FileNotFoundError, ValueError, ConfigError) as err:
            print(f"soundclr: error: --dataset-folder: {err}", file=sys.stderr)
            return 2
    if args.command == "reproduce" and args.dataset is None:
        args.dataset = "synthetic"
    interface = os.environ.get("SOUNDCLR_INTERFACE")
    if args.command in FLAG_COMMANDS:
        os.environ["SOUNDCLR_INTERFACE"] = "cli"     # a bad clip says --on-bad-file skip, not on_bad_file="skip"
    try:
        with sigterm_raises():
            return _dispatch(args)
    except ConfigError as err:  # an invalid setting on the command line: a usage error
        print(f"soundclr: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        what = "stopped by SIGTERM" if isinstance(stop, Terminated) else "interrupted"
        print(f"soundclr: {what}; a run in progress resumes from its last checkpoint when the same command runs again",
              file=sys.stderr)
        return 143 if isinstance(stop, Terminated) else 130
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        if os.environ.get("SOUNDCLR_DEBUG"):
            raise
        print(f"soundclr: error: {err}\n(set SOUNDCLR_DEBUG=1 for the full traceback)", file=sys.stderr)
        return 1
    except Exception as err:  # the library's own error classes: one clear line, no traceback
        if type(err).__name__ in RUNTIME_ERRORS and not os.environ.get("SOUNDCLR_DEBUG"):
            print(f"soundclr: error: {err}", file=sys.stderr)
            return 1
        raise
    finally:
        if interface is None:
            os.environ.pop("SOUNDCLR_INTERFACE", None)
        else:
            os.environ["SOUNDCLR_INTERFACE"] = interface


def _dispatch(args) -> int:
    if args.command in ("data", "evaluate", "predict", "reproduce") and getattr(args, "data_command", None) != "download":
        fit_threads()           # this process's share of the cores (training workers it starts size their own)
    if args.command == "data":
        if args.data_command == "download":
            path = download(args.name, args.root, keep_archive=args.keep_archive)
            note = " (ESC-10 is read from the ESC-50 folder: --dataset esc10)" if args.name == "esc10" else ""
            print(f"{args.name} is ready in {path}{note}")
            return 0
        if args.name is None:
            raise ConfigError("data prepare: name a dataset (esc50, esc10, us8k, synthetic) or give --dataset-folder DIR")
        cfg = preset("paper", dataset=args.name, data_root=args.root, sample_rate=args.sample_rate, on_bad_file=args.on_bad_file)
        bank = load_bank(cfg)
        seconds = (bank.lengths.float() / bank.sample_rate)
        print(f"{bank.dataset}: {len(bank)} clips, {bank.n_classes} classes, folds {bank.fold_ids}, "
              f"{bank.sample_rate} Hz, {seconds.min():.2f}-{seconds.max():.2f} s per clip")
        return 0

    if args.command == "train":
        return _train(args)

    if args.command == "status":

        entries = status(args.results, args.dataset, args.experiment)
        print(json.dumps(entries, indent=1) if args.json else format_status(entries, details=not args.brief))
        return 0

    if args.command == "slurm":
        return _slurm(args)

    if args.command == "plan":
        return _plan(args)
    if args.command == "evaluate":
        accs = noise_accuracy(args.run, args.noise, device=args.device)
        for std, acc in accs.items():
            print(f"noise std {std:g}: accuracy {100 * acc:.2f} %")
        return 0

    if args.command == "predict":
        for name, p in predict_file(args.file, args.checkpoint, top=args.top, device=args.device):
            print(f"{p * 100:6.2f} %  {name}")
        return 0

    if args.command == "reproduce":
        settings = parse_set(args.settings)
        check_settings(args.dataset, args.preset, settings)      # a bad --set: a usage error, before any work
        schemes = plan_schemes(args.schemes)                     # an unknown scheme: a usage error, before any work
        if args.train_only:
            train_plan(args.dataset, args.preset, device=args.device, results=args.results, data_root=args.data_root,
                       size=args.size, workers=args.workers, settings=settings, schemes=schemes)
            return 0
        reproduce(args.dataset, args.preset, device=args.device, results=args.results, data_root=args.data_root,
                  size=args.size, build=not args.no_build, workers=args.workers, settings=settings,
                  plugins=args.plugin, schemes=schemes)
        return 0
    return 1


def _train(args) -> int:
    cfg = _config_from_args(args)
    try:
        i, n = (int(t) for t in args.shard.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {args.shard!r} is not valid: expected 'i/n', e.g. 0/4") from None
    if not 0 <= i < n:
        raise ConfigError(f"--shard {args.shard!r} is not valid: expected 'i/n' with 0 <= i < n, e.g. 0/4")
    schemes = args.schemes.split(",") if args.schemes else None
    for s in schemes or []:
        cfg.override(scheme=s)  # validates the name
    if args.workers > 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("--workers starts training processes on this machine; under torchrun every process is "
                          "already one rank of a run: leave --workers out")
    runs = grid(cfg, args.experiment, schemes=schemes, folds=args.folds, seeds=args.seeds, results=args.results)
    mine = [r for k, r in enumerate(runs) if k % n == i]
    # Before any decoding or training: the settings, the results folder, the dataset, the weights.
    preflight([r.config for r in mine if not r.finished], results=args.results)
    lead = os.environ.get("RANK", "0") == "0"
    if args.workers > 1:
        summaries = _train_workers(args, cfg, mine)
    else:
        log = (lambda line: print(f"  {line}", flush=True)) if args.progress_lines else None
        summaries = work(runs, shard=(i, n), verbose=lead, progress=not args.quiet and not args.progress_lines and lead,
                         retry_failed=args.retry_failed, log=log, wait=args.wait)
    for s in summaries if lead else []:
        print(f"{s['scheme']:7s} fold {s['test_fold']} seed {s['seed']}: final {100 * s['final']['test_acc']:.2f} %"
              f"  (best epoch {s['best_on_test']['epoch']} on the test fold, the paper's protocol: {100 * s['best_on_test']['test_acc']:.2f} %)")
    return unfinished_status(mine, f"soundclr status --results {args.results} --dataset {cfg.data.dataset} "
                                   f"--experiment {args.experiment}") if lead else 0


def unfinished_status(mine, status_command: str) -> int:
    """The exit status of a training command, from the runs of its own shard (``mine``): 0 when each is finished
    or held by another live worker (that worker finishes it: a worker of a SLURM array does not fail because its
    peers hold runs), 1 when any failed or is left unfinished; says which, and what to do."""
    left = [r for r in mine if not r.finished]
    failed = [r for r in left if (r.directory / FAILED).exists()]
    leases = {r.directory: read_lease(r.directory) for r in left if r not in failed}
    held = [r for r in left if leases.get(r.directory) is not None and not holder_gone(leases[r.directory])]
    rest = [r for r in left if r not in failed and r not in held]

    def names(rs):
        return ", ".join(r.directory.name for r in rs[:5]) + (f" and {len(rs) - 5} more" if len(rs) > 5 else "")
    if held:
        who = sorted({f"{leases[r.directory].get('host')} pid {leases[r.directory].get('pid')}" for r in held})
        print(f"{len(held)} run(s) are being trained by other live workers ({'; '.join(who[:3])}): they finish them "
              f"(--wait waits for them). Progress: {status_command}")
    if failed:
        print(f"soundclr: {len(failed)} run(s) failed: {names(failed)}. The error of each: {status_command}; train them "
              "again with --retry-failed", file=sys.stderr)
    if rest:
        print(f"soundclr: {len(rest)} run(s) are not finished: {names(rest)}. Run the same command again (a run resumes "
              f"from its checkpoint); {status_command}", file=sys.stderr)
    return 1 if failed or rest else 0


def _train_workers(args, cfg, mine) -> list[dict]:
    """``train --workers N``: decode the data once here, then start N processes of the same command
    (``--workers 1``), which lease the runs among themselves; the summaries of the finished runs."""
    todo = [r for r in mine if not r.finished]
    if todo:
        workers = min(args.workers, len(todo))
        print(f"{len(todo)} run(s) to train with {workers} worker processes", flush=True)
        cmd = [sys.executable, "-m", "soundclr", *args.argv, "--workers", "1", "--quiet", "--progress-lines"]
        train_in_processes(cmd, workers, todo[0].config, progress=not args.quiet)   # argparse keeps the last --workers: 1
    return [read_json(r.directory / "summary.json") for r in mine if r.finished]


def _slurm(args) -> int:

    train_args = list(args.train_args)
    if train_args[:1] == ["--"]:
        train_args = train_args[1:]
    command = train_args.pop(0) if train_args[:1] in (["train"], ["reproduce"]) else "train"
    if not train_args:
        raise ConfigError("give the grid after `--`, e.g. soundclr slurm --workers 8 -- --dataset esc50 --preset paper "
                          "--schemes ce,supcon,hybrid --folds 1,2,3,4,5 --seeds 0,1,2,3,4 (or `-- reproduce --dataset "
                          "esc50 --preset paper` for every run of the book)")
    parsed = build_parser().parse_args([command, *train_args])     # a typo fails here, not on the cluster
    results = Path(parsed.results).resolve()
    if "--results" not in train_args:
        train_args += ["--results", str(results)]
    else:   # the tasks may start in another folder: make the paths absolute
        k = train_args.index("--results")
        train_args[k + 1] = str(results)
    if command == "train":
        cfg = _config_from_args(parsed)
        dataset, experiment = cfg.data.dataset, parsed.experiment
        if "--quiet" not in train_args:
            train_args.append("--quiet")     # no progress bars in the task's output file: one line per run
    else:
        dataset, experiment = parsed.dataset, "book"
        data_root = str(Path(parsed.data_root).resolve())
        if "--data-root" in train_args:
            train_args[train_args.index("--data-root") + 1] = data_root
        else:
            train_args += ["--data-root", data_root]
        train_args += ["--train-only", "--workers", "1"]
    job = args.job_name or f"soundclr-{dataset}-{experiment}"
    text = sbatch_script(train_args, workers=args.workers, time_limit=args.time, partition=args.partition, command=command,
                         gpus_per_worker=args.gpus_per_worker, gpus_per_run=args.gpus_per_run,
                         cpus_per_worker=args.cpus_per_worker, mem=args.mem, job_name=job,
                         output_dir=results / "slurm", extra_sbatch=args.sbatch)
    path = write_script(text, results / "slurm", job)
    print(f"wrote {path}")
    if args.submit:
        job_id = submit(path)
        print(f"submitted job array {job_id} ({args.workers} tasks); progress: soundclr status --results {results}")
    else:
        print(f"submit it with: sbatch {path}")
    return 0


def _plan(args) -> int:
    """``soundclr plan``: the decisive design from a pilot's runs (soundclr.analysis.planning)."""
    try:
        report = plan_report(args.results, args.dataset, effect=args.effect)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    print(report_text(report))
    if args.slurm and report["design"]:
        k = len(dataset_record(args.dataset).fold_sizes)
        seeds = report["design"]["need"] or 5
        train = ["--dataset", args.dataset, "--preset", "paper", "--schemes", "ce,supcon,hybrid",
                 "--folds", ",".join(str(f) for f in range(1, k + 1)), "--seeds", ",".join(str(s) for s in range(seeds)),
                 "--results", str(Path(args.results).resolve()), "--quiet"]
        job = f"soundclr-{args.dataset}-decisive"
        text = sbatch_script(train, workers=args.workers, time_limit=args.time, partition=args.partition, command="train",
                             job_name=job, output_dir=Path(args.results).resolve() / "slurm")
        path = write_script(text, Path(args.results).resolve() / "slurm", job)
        print(f"wrote {path}: submit it with sbatch {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
