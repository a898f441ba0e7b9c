"""The ``soundclr`` command line.

    soundclr data download esc50|us8k --root data
    soundclr data prepare esc50 --root data           decode once into the cache
    soundclr train --dataset esc50 --preset paper --schemes ce,supcon,hybrid --folds 1,2,3,4,5 --seeds 0,1,2,3,4
    soundclr evaluate results/esc50/main/<run> [--noise 1e-4,5e-4,1e-3]
    soundclr predict clip.wav --checkpoint results/esc50/main/<run>
    soundclr reproduce --dataset esc50 --preset paper  every notebook with papermill, then the book

Every setting of the configuration (``soundclr/config.py``) is a flag of
``train``: ``--lr 1e-3 --freq-masks 0 --window hann``. Under ``torchrun`` the
same ``train`` command trains one run with DistributedDataParallel.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from .config import SECTIONS, ConfigError, PRESETS, preset


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of integers, got {text!r}") from None


def _floats(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of numbers, got {text!r}") from None


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    for section, cls in SECTIONS.items():
        group = p.add_argument_group(f"{section} settings")
        for f in fields(cls):
            if f.name in ("scheme", "test_fold", "seed"):
                continue  # given as lists: --schemes, --folds, --seeds
            default = f.default
            group.add_argument("--" + f.name.replace("_", "-"), dest="cfg_" + f.name, default=None, metavar=f.type.split(" ")[0].upper(),
                               help=f"(paper preset: {default!r})")


def _config_from_args(args) -> "object":
    settings = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}
    return preset(args.preset, **settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="soundclr", description="SoundCLR: supervised contrastive learning for environmental sound classification, reproduced.")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="download, prepare and inspect datasets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    dl = dsub.add_parser("download", help="download and verify ESC-50 or UrbanSound8K into ROOT/<name>/")
    dl.add_argument("name", choices=["esc50", "us8k"])
    dl.add_argument("--root", default="data", help="data folder (default: data)")
    dl.add_argument("--keep-archive", action="store_true", help="keep the downloaded archive")
    prep = dsub.add_parser("prepare", help="decode a dataset once into its on-disk cache and print a summary")
    prep.add_argument("name", choices=["esc50", "esc10", "us8k", "synthetic"])
    prep.add_argument("--root", default="data")
    prep.add_argument("--sample-rate", type=int, default=44100)
    prep.add_argument("--on-bad-file", choices=["error", "skip"], default="error")

    tr = sub.add_parser("train", help="train a grid of runs (schemes x folds x seeds) into the results store")
    tr.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    tr.add_argument("--schemes", default=None, help="comma-separated: ce,supcon,hybrid (default: hybrid)")
    tr.add_argument("--folds", type=_ints, default=None, help="test folds, e.g. 1,2,3 (default: all)")
    tr.add_argument("--seeds", type=_ints, default=[0], help="seeds, e.g. 0,1,2,3,4 (default: 0)")
    tr.add_argument("--experiment", default="main", help="experiment name: results/<dataset>/<experiment>/")
    tr.add_argument("--results", default="results", help="results folder (default: results)")
    tr.add_argument("--shard", default="0/1", help="run only runs i, i+n, ... of the grid: 'i/n' (default 0/1)")
    _add_config_flags(tr)

    ev = sub.add_parser("evaluate", help="evaluate a finished run's final model on its test fold")
    ev.add_argument("run", help="a run folder, results/<dataset>/<experiment>/<run>")
    ev.add_argument("--noise", type=_floats, default=[0.0], help="white-noise standard deviations, e.g. 0,1e-4,5e-4,1e-3")
    ev.add_argument("--device", default="auto")

    pr = sub.add_parser("predict", help="top-5 classes of an audio file (any rate, mono or stereo)")
    pr.add_argument("file")
    pr.add_argument("--checkpoint", required=True, help="a finished run folder (or its model.pt)")
    pr.add_argument("--top", type=int, default=5)
    pr.add_argument("--device", default="auto")

    rp = sub.add_parser("reproduce", help="run every notebook with papermill into book/generated/<dataset>/, then build the book")
    rp.add_argument("--dataset", default="synthetic", choices=["esc50", "esc10", "us8k", "synthetic"])
    rp.add_argument("--preset", default="quick", choices=sorted(PRESETS))
    rp.add_argument("--device", default="auto")
    rp.add_argument("--results", default="results")
    rp.add_argument("--data-root", default="data")
    rp.add_argument("--size", default=None, help="'tiny' for the smallest settings (tests); default: the preset's")
    rp.add_argument("--no-build", action="store_true", help="run the notebooks but do not build the book")
    return parser


def main(argv: list[str] | None = None) -> int:
    import os
    args = build_parser().parse_args(argv)
    if os.environ.get("SOUNDCLR_DEBUG"):
        return _dispatch(args)  # full tracebacks
    try:
        return _dispatch(args)
    except (ConfigError, FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"soundclr: error: {err}\n(set SOUNDCLR_DEBUG=1 for the full traceback)", file=sys.stderr)
        return 2
    except Exception as err:  # the library's own error classes: one clear line, no traceback
        if type(err).__name__ in ("DatasetError", "DownloadError", "WeightsError", "NotebookError"):
            print(f"soundclr: error: {err}", file=sys.stderr)
            return 2
        raise


def _dispatch(args) -> int:
    if args.command == "data":
        if args.data_command == "download":
            from .download import download
            path = download(args.name, args.root, keep_archive=args.keep_archive)
            print(f"{args.name} is ready in {path}")
            return 0
        from .data import load_bank
        cfg = preset("paper", dataset=args.name, data_root=args.root, sample_rate=args.sample_rate, on_bad_file=args.on_bad_file)
        bank = load_bank(cfg)
        seconds = (bank.lengths.float() / bank.sample_rate)
        print(f"{bank.dataset}: {len(bank)} clips, {bank.n_classes} classes, folds {sorted(set(bank.folds.tolist()))}, "
              f"{bank.sample_rate} Hz, {seconds.min():.2f}-{seconds.max():.2f} s per clip")
        return 0

    if args.command == "train":
        from .experiment import grid, run_grid
        cfg = _config_from_args(args)
        try:
            i, n = (int(t) for t in args.shard.split("/"))
        except ValueError:
            raise ValueError(f"--shard {args.shard!r} is not valid: expected 'i/n', e.g. 0/4") from None
        schemes = args.schemes.split(",") if args.schemes else None
        for s in schemes or []:
            cfg.override(scheme=s)  # validates the name
        runs = grid(cfg, args.experiment, schemes=schemes, folds=args.folds, seeds=args.seeds, results=args.results)
        import os
        summaries = run_grid(runs, shard=(i, n), verbose=os.environ.get("RANK", "0") == "0")
        for s in summaries if os.environ.get("RANK", "0") == "0" else []:
            print(f"{s['scheme']:7s} fold {s['test_fold']} seed {s['seed']}: final {100 * s['final']['test_acc']:.2f} %"
                  f"  (best epoch {s['best_on_test']['epoch']} on the test fold, the paper's protocol: {100 * s['best_on_test']['test_acc']:.2f} %)")
        return 0

    if args.command == "evaluate":
        from .experiment import noise_accuracy
        accs = noise_accuracy(args.run, args.noise, device=args.device)
        for std, acc in accs.items():
            print(f"noise std {std:g}: accuracy {100 * acc:.2f} %")
        return 0

    if args.command == "predict":
        from .predict import predict_file
        for name, p in predict_file(args.file, args.checkpoint, top=args.top, device=args.device):
            print(f"{p * 100:6.2f} %  {name}")
        return 0

    if args.command == "reproduce":
        from .reproduce import reproduce
        reproduce(args.dataset, args.preset, device=args.device, results=args.results, data_root=args.data_root,
                  size=args.size, build=not args.no_build)
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
