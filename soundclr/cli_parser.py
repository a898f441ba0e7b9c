"""The ``soundclr`` command line's parser: every command, flag and help text (:func:`build_parser`);
:mod:`soundclr.cli` runs what it parses."""
from __future__ import annotations

import argparse
from dataclasses import fields

from . import __version__
from .config import PRESETS, SECTIONS, setting_descriptions
from .datasets import PAPER_DATASETS


def workers_count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a number of processes (1 or more), got {text!r}")
    return n


def int_list(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of integers, got {text!r}") from None


def float_list(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of numbers, got {text!r}") from None


def add_config_flags(p: argparse.ArgumentParser) -> None:
    comments = setting_descriptions()
    for section, cls in SECTIONS.items():
        group = p.add_argument_group(f"{section} settings")
        for f in fields(cls):
            if f.name in ("scheme", "test_fold", "seed"):
                continue  # given as lists: --schemes, --folds, --seeds
            group.add_argument("--" + f.name.replace("_", "-"), dest="cfg_" + f.name, default=None,
                               metavar=f.type.split(" ")[0].upper(),
                               help=f"{comments.get(f.name, '')} (paper preset: {f.default!r})".replace("%", "%%"))


def plugin_flag(parser: argparse.ArgumentParser) -> None:
    """``--plugin FILE`` (repeatable), for every command that names or reads a run's scheme."""
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE",
                        help="a Python file that registers a scheme of your own (soundclr.schemes.register; e.g. "
                        "examples/label_smoothing.py): its name then works in --schemes and its runs are read (repeatable)")


def dataset_folder_flag(parser: argparse.ArgumentParser) -> None:
    """``--dataset-folder DIR``: a dataset of your own in ESC-50's layout, with no code."""
    parser.add_argument("--dataset-folder", default=None, metavar="DIR",
                        help="a folder of your own in ESC-50's layout (meta/<name>.csv with the columns filename, fold, "
                        "target, category; the clips in audio/): registered as the dataset named after the folder, "
                        "with the folds of its CSV and the length of its longest clip (soundclr.datasets.register_folder)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="soundclr", description="SoundCLR: supervised contrastive learning for "
                                     "environmental sound classification, reproduced.")
    parser.add_argument("--version", action="version", version=f"soundclr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="download, prepare and inspect datasets")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    dl = dsub.add_parser("download", help="download and verify ESC-50 (also ESC-10's files) or UrbanSound8K into ROOT/<name>/")
    dl.add_argument("name", choices=list(PAPER_DATASETS), help="esc10 is a subset of ESC-50: its files are ESC-50's")
    dl.add_argument("--root", default="data", help="data folder (default: data)")
    dl.add_argument("--keep-archive", action="store_true", help="keep the downloaded archive")
    prep = dsub.add_parser("prepare", help="decode a dataset once into its on-disk cache and print a summary")
    prep.add_argument("name", nargs="?", default=None, help="esc50, esc10, us8k, synthetic, or a --plugin's "
                      "(not with --dataset-folder)")
    dataset_folder_flag(prep)
    plugin_flag(prep)
    prep.add_argument("--root", default="data", help="data folder (default: data)")
    prep.add_argument("--sample-rate", type=int, default=44100, help="decode at this rate (default: 44100, the paper's)")
    prep.add_argument("--on-bad-file", choices=["error", "skip"], default="error",
                      help="stop at an unreadable file (default) or skip it and list it")

    tr = sub.add_parser("train", help="train a grid of runs (schemes x folds x seeds) into the results store")
    tr.add_argument("--preset", default="paper", choices=sorted(PRESETS), help="the settings to start from (default: paper)")
    dataset_folder_flag(tr)
    tr.add_argument("--schemes", default=None, help="comma-separated: ce,supcon,hybrid, or a --plugin's (default: hybrid)")
    plugin_flag(tr)
    tr.add_argument("--folds", type=int_list, default=None, help="test folds, e.g. 1,2,3 (default: all)")
    tr.add_argument("--seeds", type=int_list, default=[0], help="seeds, e.g. 0,1,2,3,4 (default: 0)")
    tr.add_argument("--experiment", default="main", help="experiment name: results/<dataset>/<experiment>/")
    tr.add_argument("--results", default="results", help="results folder (default: results)")
    tr.add_argument("--shard", default="0/1", help="run only runs i, i+n, ... of the grid: 'i/n' (default 0/1; "
                    "not needed for several workers: each run is leased by one)")
    tr.add_argument("--retry-failed", action="store_true", help="train again the runs that failed before")
    tr.add_argument("--quiet", action="store_true", help="no progress bar, only one line per run")
    tr.add_argument("--wait", action="store_true", help="when other live workers hold runs of this grid, wait for them "
                    "to finish (taking over any whose worker dies) instead of leaving those runs to them")
    tr.add_argument("--workers", type=workers_count, default=1, help="training processes to start on this machine (default 1): "
                    "each leases runs of the grid and takes its share of the cores, as `reproduce` does")
    tr.add_argument("--progress-lines", action="store_true", help=argparse.SUPPRESS)   # a worker of --workers: lines, no bar
    add_config_flags(tr)

    st = sub.add_parser("status", help="the runs of a results folder: finished, running, stale, failed, to do; an ETA")
    st.add_argument("--results", default="results", help="results folder (default: results)")
    st.add_argument("--dataset", default=None, help="only this dataset")
    st.add_argument("--experiment", default=None, help="only this experiment")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.add_argument("--brief", action="store_true", help="one line per experiment")
    plugin_flag(st)

    sl = sub.add_parser("slurm", help="write (and --submit) an sbatch job array that runs a grid: one worker per task",
                        description="Everything after `--` is passed to `soundclr train` (the grid and its settings).")
    sl.add_argument("--workers", type=int, default=4, help="array tasks, i.e. runs trained at once (default: 4)")
    sl.add_argument("--partition", default=None, help="SLURM partition (default: the cluster's default)")
    sl.add_argument("--time", default="24:00:00", help="time limit per task (default 24:00:00); a task stopped by it "
                    "releases its run, which the next task resumes")
    sl.add_argument("--gpus-per-worker", type=int, default=1, help="GPUs per task, as --gres=gpu:N (default 1; 0 for CPU)")
    sl.add_argument("--gpus-per-run", type=int, default=1, help="train each run on this many GPUs with torchrun (default 1)")
    sl.add_argument("--cpus-per-worker", type=int, default=8, help="CPU cores per task (default 8)")
    sl.add_argument("--mem", default=None, help="memory per task, e.g. 32G (default: the cluster's)")
    sl.add_argument("--job-name", default=None, help="default: soundclr-<dataset>-<experiment>")
    sl.add_argument("--sbatch", action="append", default=[], metavar="OPTION",
                    help="another #SBATCH line, e.g. --sbatch=--account=mylab (repeatable)")
    sl.add_argument("--submit", action="store_true", help="submit the script with sbatch (default: only write it)")
    sl.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then the arguments of `soundclr train` (a grid), "
                    "or `reproduce` and its arguments (every run the book of a dataset needs)")

    pn = sub.add_parser("plan", help="fit the noise model to a results folder's main grid (a pilot) and print the "
                        "decisive design of the headline claims: power, seeds per fold, size and GPU-hours, simulated "
                        "with the ledger's own rule")
    pn.add_argument("--results", default="results", help="the results folder holding the pilot (default: results)")
    pn.add_argument("--dataset", required=True, help="the pilot's dataset: its main grid is read from "
                    "RESULTS/DATASET/main (ce, supcon and hybrid runs on two or more folds)")
    pn.add_argument("--effect", type=float, default=None, metavar="POINTS",
                    help="plan for this effect instead of the paper's (Table III) and half of it")
    pn.add_argument("--slurm", action="store_true", help="also write the SLURM array job that trains the recommended "
                    "design into RESULTS (the paper preset, every scheme, fold and seed); see `soundclr slurm --help`")
    pn.add_argument("--workers", type=workers_count, default=8, help="array tasks of the --slurm job (default: 8)")
    pn.add_argument("--partition", default=None, help="SLURM partition of the --slurm job")
    pn.add_argument("--time", default="24:00:00", help="time limit of each array task (default: 24:00:00)")
    dataset_folder_flag(pn)

    ev = sub.add_parser("evaluate", help="evaluate a finished run's final model on its test fold")
    ev.add_argument("run", help="a run folder, results/<dataset>/<experiment>/<run>")
    plugin_flag(ev)
    ev.add_argument("--noise", type=float_list, default=[0.0], help="white-noise standard deviations, e.g. 0,1e-4,5e-4,1e-3")
    ev.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")

    pr = sub.add_parser("predict", help="top-5 classes of an audio file (any rate, mono or stereo)")
    pr.add_argument("file", help="an audio file soundfile can read (WAV, FLAC, OGG, ...)")
    pr.add_argument("--checkpoint", required=True, help="a finished run folder (or its model.pt)")
    plugin_flag(pr)
    pr.add_argument("--top", type=int, default=5, help="how many classes to print (default 5)")
    pr.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")

    rp = sub.add_parser("reproduce", help="train every grid, run every notebook with papermill into "
                        "book/generated/<dataset>/, then build the book")
    rp.add_argument("--dataset", default=None, help="esc50, esc10, us8k, synthetic (the default), or a --plugin's")
    dataset_folder_flag(rp)
    rp.add_argument("--preset", default="quick", choices=sorted(PRESETS))
    rp.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    rp.add_argument("--results", default="results", help="results folder (default: results)")
    rp.add_argument("--data-root", default="data", help="data folder (default: data)")
    rp.add_argument("--size", default=None, help="'tiny' for the smallest settings (tests); default: the preset's")
    rp.add_argument("--workers", type=int, default=None, help="training processes on this machine (default: 2 on a "
                    "CPU with 2+ cores, 1 on a GPU)")
    rp.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                    help="any setting of the configuration on top of the preset, as `train` takes it as a flag "
                    "(repeatable): --set batch_size=16 --set backbone=resnet18; passed to the training workers and "
                    "to every notebook's `settings` parameter")
    rp.add_argument("--schemes", default=None, help="schemes of your own (comma-separated, registered by a --plugin) "
                    "to train and show beside the paper's three: each gets a training page, a row in every table, a "
                    "bar in every figure, and its plugin's claims join the ledger")
    plugin_flag(rp)
    rp.add_argument("--no-build", action="store_true", help="run the notebooks but do not build the book")
    rp.add_argument("--train-only", action="store_true", help="only train the runs the book needs (e.g. on cluster "
                    "nodes, as workers of `soundclr slurm`); no notebooks, no book")
    return parser
