"""Run every notebook with papermill into ``book/generated/<dataset>/``, then build the book.

``soundclr reproduce --dataset esc50 --preset paper`` (and ``make book``, which
does it for the synthetic dataset on the quick preset). The notebooks read and
write the results store, so training runs already finished are skipped when
this is run again. A failed notebook stops everything with the cell's error;
its partly executed copy is kept as ``<name>.failed.ipynb`` for inspection.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from ..analysis.ledger import ledger
from ..config import ConfigError
from ..datasets import get as dataset_of
from ..config import preset as make_preset
from ..data.bank import load_bank
from ..files import SOURCE_ROOT
from ..runs.pool import train_in_processes, work
from ..runs.threads import thread_env, worker_threads
from ..train.checks import preflight
from ..schemes import PAPER_SCHEMES, label_of, load_plugins
from .plan import make_plan, plan_schemes

ROOT = SOURCE_ROOT


# (output name, notebook source, extra parameters): the training notebook runs once per scheme of the plan
# (the paper's three here; a scheme of your own, --schemes, adds its page after them: see notebooks_for).
NOTEBOOKS = [
    ("augmentations", "augmentations", {}),
    ("training-ce", "training", {"scheme": "ce"}),
    ("training-supcon", "training", {"scheme": "supcon"}),
    ("training-hybrid", "training", {"scheme": "hybrid"}),
    ("results", "results", {}),
    ("representations", "representations", {}),
    ("robustness", "robustness", {}),
    ("ablation", "ablation", {}),
    ("claims", "claims", {}),          # last: it reads every run (its page comes right after the introduction)
]


def notebooks_for(schemes) -> list[tuple[str, str, dict]]:
    """:data:`NOTEBOOKS` for a plan of ``schemes``: a training page for each scheme not among the paper's,
    after the paper's three."""
    extra = [(f"training-{s}", "training", {"scheme": s}) for s in plan_schemes(schemes) if s not in PAPER_SCHEMES]
    last = max(i for i, (name, _, _) in enumerate(NOTEBOOKS) if name.startswith("training-"))
    return [*NOTEBOOKS[:last + 1], *extra, *NOTEBOOKS[last + 1:]]


# href="results.ipynb" or href="results.ipynb#table-ii" in an HTML output (a sibling notebook, as Jupyter Lab opens
# it), with the book's page named in data-book-page where it differs (training.ipynb: training-hybrid.html)
NOTEBOOK_HREF = re.compile(r'href="([A-Za-z0-9_-]+)\.ipynb(#[^"]*)?"(\s+data-book-page="([A-Za-z0-9_-]+)")?')

# The notebooks' prose is written for Jupyter Lab, whose files are relative to notebooks/: a hand-written page of
# the book is ../book/<page>.md, a citation a link with the bibliography key in its title,
# ([McInnes et al., 2018](https://arxiv.org/abs/1802.03426 "cite:mcinnes2018umap")). The book's copy lives in
# book/generated/<dataset>/: the page is ../../<page>.md (a Markdown link) or ../../<page>.html (raw HTML), the
# citation the {cite:p} role.
LAB_PAGE_LINK = re.compile(r"\]\(\.\./book/([A-Za-z0-9_/-]+\.md(?:#[^)\s]*)?)\)")
LAB_PAGE_HREF = re.compile(r'href="\.\./book/([A-Za-z0-9_/-]+)\.md(#[^"]*)?"')
LAB_CITATION = re.compile(r'\(\[[^\]]+\]\([^)\s]+\s+"cite:([\w:-]+)"\)\)')



class NotebookError(RuntimeError):
    """A notebook failed: names the notebook and the failing cell's error."""


# Settings that have their own parameter (reproduce's flags, the notebooks' parameters) or that the plan's grids set
# run by run: `--set` does not take them.
OWN_FLAG = {"dataset": "--dataset", "device": "--device", "data_root": "--data-root"}
PER_RUN = ("scheme", "test_fold", "seed")


def check_settings(dataset: str, preset: str, settings: dict | None) -> tuple[dict, int | None]:
    """Validate settings given on top of the preset (``soundclr reproduce --set KEY=VALUE``, a notebook's
    ``settings`` parameter) before any work, as the command line validates its flags: an unknown key is a
    ConfigError naming the valid ones, a bad value one naming the expected type. Returns the settings
    (names with underscores) without ``epochs``, and ``epochs`` apart (the notebooks' own parameter)."""
    out: dict = {}
    for name, value in (settings or {}).items():
        key = str(name).replace("-", "_")
        bare = key.split(".")[-1]
        if bare in OWN_FLAG:
            raise ConfigError(f"setting {name!r} has its own flag: use {OWN_FLAG[bare]} instead of --set {name}=...")
        if bare in PER_RUN:
            raise ConfigError(f"setting {name!r} is set run by run by the book's grids (every scheme, test fold and "
                              "seed of the plan): it cannot be given with --set")
        out[key] = value
    cfg = make_preset(preset, dataset=dataset, **out)      # unknown names and bad values: ConfigError
    epochs = None
    for key in [k for k in out if k.split(".")[-1] == "epochs"]:
        del out[key]
        epochs = cfg.optim.epochs
    return out, epochs


def parse_set(items: list[str] | None) -> dict[str, str]:
    """``--set KEY=VALUE`` (repeatable) as a dict of strings; the values are converted to each setting's
    type by the configuration, as the command line's flags are."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r} is not valid: expected KEY=VALUE, e.g. --set batch_size=16")
        out[key.strip()] = value.strip()
    return out


def repo_root() -> Path:
    if not (ROOT / "notebooks").is_dir() or not (ROOT / "_config.yml").exists():
        raise NotebookError(f"the notebooks and the book are not next to the library ({ROOT}): "
                            "run from a clone of the repository installed with `pip install -e .` (the Makefile does this)")
    return ROOT


def run_notebooks(dataset: str, preset: str = "quick", *, device: str = "auto", results: str = "results",
                  data_root: str = "data", size: str | None = None, only: list[str] | None = None,
                  out_dir: Path | None = None, jobs: int | None = None, settings: dict | None = None,
                  plugins: list[str] | None = None, schemes: list[str] | None = None) -> list[Path]:
    """Execute every notebook (or those in ``only``) with papermill into ``out_dir``, ``jobs`` at a
    time (default: 2 on a machine with 2 or more cores), each in its own process and kernel. A
    failed notebook stops the rest with the failing cell's error; its executed copy is kept as
    ``<name>.failed.ipynb``. ``settings``: any setting of the configuration on top of the preset
    (each notebook's ``settings`` parameter; ``epochs`` goes to its ``epochs`` parameter), checked
    before the first notebook starts. ``plugins``: files of your own schemes and claims, loaded here and by
    every notebook; ``schemes``: yours, trained and shown beside the paper's three (a training page each)."""

    plugins = [str(Path(p).resolve()) for p in plugins or []]
    load_plugins(plugins)
    schemes = [s for s in plan_schemes(schemes) if s not in PAPER_SCHEMES] or None
    settings, epochs = check_settings(dataset, preset, settings)
    root = repo_root()
    out_dir = Path(out_dir) if out_dir else root / "book" / "generated" / dataset
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"dataset": dataset, "preset": preset, "device": device, "size": size, "interactive": False,
              "results": str(Path(results).resolve()), "data_root": str(Path(data_root).resolve()),
              "settings": settings, "plugins": plugins, "schemes": schemes,
              **({"epochs": epochs} if epochs is not None else {})}
    todo = [(name, source, extra) for name, source, extra in notebooks_for(schemes) if not only or name in only]
    jobs = max(1, min(jobs or min(2, os.cpu_count() or 1), len(todo) or 1))
    # each kernel gets its share of the cores, as the training workers do: two kernels evaluating with a
    # thread per core each ran the first claims ledger of a build 15 times slower (270 s against 18 s)
    env = thread_env(worker_threads(jobs))
    with ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(_run_one, root, out_dir, dataset, name, source, {**params, **extra}, env)
                   for name, source, extra in todo]
        try:
            written = [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    return written


def _run_one(root: Path, out_dir: Path, dataset: str, name: str, source: str, params: dict,
             env: dict | None = None) -> Path:
    import nbformat  # the book extra's: `soundclr train` runs without it
    src = root / "notebooks" / f"{source}.ipynb"
    out = out_dir / f"{name}.ipynb"
    tmp = out_dir / f".{name}.running.ipynb"
    t0 = time.time()
    print(f"[reproduce] {dataset}: running {src.name} -> {out.relative_to(root) if out.is_relative_to(root) else out}", flush=True)
    cmd = [sys.executable, "-m", "papermill", str(src), str(tmp), "-y", json.dumps(params), "-k", "python3",
           "--cwd", str(root), "--no-progress-bar"]
    r = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        failed = out_dir / f"{name}.failed.ipynb"
        if tmp.exists():
            os.replace(tmp, failed)
            where, what = _failing_cell(failed)
            if where == "?":          # no cell failed (the kernel did not start, or died): papermill's own words
                what = (r.stderr.strip().splitlines() or [what])[-1]
        else:
            where, what = "?", (r.stderr.strip().splitlines() or ["papermill failed"])[-1]
        raise NotebookError(f"notebook {src.name} ({name}) failed in cell {where}: {what}\n"
                            f"the executed copy is in {failed}")
    nb = nbformat.read(tmp, as_version=4)
    _for_the_book(nb, dataset, params.get("scheme"))
    nbformat.write(nb, tmp)
    os.replace(tmp, out)
    (out_dir / f"{name}.failed.ipynb").unlink(missing_ok=True)
    print(f"[reproduce] {dataset}: {name} done in {time.time() - t0:.0f} s", flush=True)
    return out


def _failing_cell(path: Path) -> tuple[str, str]:
    """The execution count and the error of the first cell with an error output."""
    import nbformat  # the book extra's: `soundclr train` runs without it
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return str(cell.get("execution_count")), f"{output.get('ename')}: {output.get('evalue')}"
    return "?", "unknown error"


def _for_the_book(nb, dataset: str, scheme: str | None = None) -> None:
    """Name the dataset (and scheme) in the page's first heading, so the book's table of
    contents tells pages apart; rewrite the links and citations written for Jupyter Lab for the
    book (:func:`book_markdown`, :func:`book_html`); and leave the parameters cells out of the page
    (the notebook's defaults, and papermill's injected values with machine paths): the page states
    the values it ran in its Settings line."""

    label = dataset_of(dataset).title + (" dataset" if dataset_of(dataset).generated else "")
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("# "):
            first, _, rest = cell.source.lstrip().partition("\n")
            if scheme:
                first = f"{first}: {label_of(scheme)}"
            if label not in first:
                first = f"{first} ({label})"
            cell.source = f"{first}\n{rest}"
            break
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = book_markdown(cell.source)
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if isinstance(data.get("text/markdown"), str):
                data["text/markdown"] = book_markdown(data["text/markdown"])
            if isinstance(data.get("text/html"), str):
                data["text/html"] = book_html(data["text/html"])
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if ("injected-parameters" in tags or "parameters" in tags) and "remove-cell" not in tags:
            tags.append("remove-cell")   # the page states the values it ran in its Settings line


def book_markdown(text: str) -> str:
    """A notebook's Markdown as the book needs it (the notebooks' prose is written for Jupyter Lab):
    ``](../book/x.md#a)`` becomes ``](../../x.md#a)``, a Lab citation ``([label](url "cite:key"))`` the
    role ``{cite:p}`key```. Links to sibling notebooks (``results.ipynb#...``) are MyST's to resolve."""
    return LAB_CITATION.sub(r"{cite:p}`\1`", LAB_PAGE_LINK.sub(r"](../../\1)", text))


def book_html(html: str) -> str:
    """Raw HTML output as the book needs it (raw HTML is not Sphinx's to resolve): a link to a notebook
    becomes a link to its page, a link to a hand-written page (``../book/x.md``) one to ``../../x.html``."""
    return LAB_PAGE_HREF.sub(r'href="../../\1.html\2"', NOTEBOOK_HREF.sub(_book_href, html))


def _book_href(m: re.Match) -> str:
    return f'href="{m.group(4) or m.group(1)}.html{m.group(2) or ""}"'


def build_book(root: Path | None = None) -> Path:
    root = root or repo_root()
    exe = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(root)]
    print("[reproduce] building the book:", " ".join(cmd), flush=True)
    r = subprocess.run(cmd, cwd=root)
    if r.returncode != 0:
        raise NotebookError(f"jupyter-book build failed (exit {r.returncode}); see its output above")
    return root / "_build" / "html"


def default_workers(device: str = "auto") -> int:
    """Training processes for one machine: one per GPU run on CUDA; on a CPU two (each with half
    the cores: small networks use two single-threaded processes better than one with two threads)."""
    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return 1
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def train_plan(dataset: str, preset: str = "quick", *, device: str = "auto", results: str = "results",
               data_root: str = "data", size: str | None = None, workers: int | None = None,
               settings: dict | None = None, schemes: list[str] | None = None) -> int:
    """Train every run the book needs (``Plan.all_runs``) with ``workers`` processes on this machine;
    the run leases give each run to one of them. Streams their progress lines; returns the number
    of runs. ``settings``: any setting of the configuration on top of the preset (``--set``). The
    settings, the results folder, the dataset and the weights are checked first
    (:func:`soundclr.train.checks`); the data is decoded once, here, before the workers start."""

    settings, epochs = check_settings(dataset, preset, settings)
    plan = make_plan(dataset, preset, size=size, device=device, results=str(Path(results).resolve()),
                     data_root=str(Path(data_root).resolve()), epochs=epochs, schemes=schemes, **settings)
    runs = plan.all_runs()
    todo = [r for r in runs if not r.finished]
    workers = max(1, min(workers or default_workers(device), len(todo) or 1))
    print(f"[reproduce] {dataset}: {len(runs)} training runs for the book, {len(runs) - len(todo)} already finished; "
          f"{len(todo)} to train with {workers} worker(s)", flush=True)
    if not todo:
        return len(runs)
    preflight([r.config for r in todo], results=results)   # before any decoding or training
    t0 = time.time()
    if workers == 1:
        load_bank(plan.config, progress=True)
        work(runs)
    else:
        args = json.dumps(dict(dataset=dataset, preset=preset, device=device, results=str(Path(results).resolve()),
                               data_root=str(Path(data_root).resolve()), size=size, settings=settings, epochs=epochs,
                               schemes=schemes))
        try:
            train_in_processes([sys.executable, "-m", "soundclr.book.reproduce", "--train-worker", args], workers, plan.config)
        except RuntimeError as err:
            raise NotebookError(f"training for the book failed: {err}") from None
    left = [r for r in runs if not r.finished]
    if left:
        raise NotebookError(f"{len(left)} run(s) of the book did not finish (first: {left[0].directory}); "
                            f"see soundclr status --results {results}")
    print(f"[reproduce] {dataset}: trained {len(todo)} runs in {time.time() - t0:.0f} s", flush=True)
    return len(runs)


def _train_worker(args: dict) -> int:
    """One training worker of ``train_plan`` (a separate process), registered as a worker of this host
    for its life (its threads: ``OMP_NUM_THREADS``, set by ``run_workers``)."""
    plan = make_plan(args["dataset"], args["preset"], size=args["size"], device=args["device"], results=args["results"],
                     data_root=args["data_root"], epochs=args.get("epochs"), schemes=args.get("schemes"),
                     **args.get("settings", {}))
    work(plan.all_runs())
    return 0


def reproduce(dataset: str = "synthetic", preset: str = "quick", *, device: str = "auto", results: str = "results",
              data_root: str = "data", size: str | None = None, build: bool = True, workers: int | None = None,
              settings: dict | None = None, plugins: list[str] | None = None,
              schemes: list[str] | None = None) -> Path | None:
    """Train every run of the book, run every notebook, build the book. ``settings``: any setting of the
    configuration on top of the preset (``soundclr reproduce --set KEY=VALUE``), checked before any work.
    ``plugins`` and ``schemes``: your own schemes and claims beside the paper's (``--plugin``, ``--schemes``)."""
    t0 = time.time()
    load_plugins([str(Path(p).resolve()) for p in plugins or []])      # the workers and kernels load them from the environment
    plan_schemes(schemes)                                               # an unknown scheme: an error before any work
    checked, epochs = check_settings(dataset, preset, settings)
    train_plan(dataset, preset, device=device, results=results, data_root=data_root, size=size, workers=workers,
               settings=settings, schemes=schemes)
    # The claims ledger, once, here: every page reads it from its cache (soundclr.analysis.ledger) instead of
    # computing it again, two notebook kernels at a time.
    t1 = time.time()
    plan = make_plan(dataset, preset, size=size, device=device, results=str(Path(results).resolve()),
                     data_root=str(Path(data_root).resolve()), epochs=epochs, schemes=schemes, **checked)
    ledger(plan, device=device)
    print(f"[reproduce] {dataset}: the claims ledger in {time.time() - t1:.0f} s", flush=True)
    run_notebooks(dataset, preset, device=device, results=results, data_root=data_root, size=size, settings=settings,
                  plugins=plugins, schemes=schemes)
    html = build_book() if build else None
    print(f"[reproduce] done in {time.time() - t0:.0f} s" + (f": open {html / 'index.html'}" if html else ""), flush=True)
    return html


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--train-worker":
        try:
            sys.exit(_train_worker(json.loads(sys.argv[2])))
        except KeyboardInterrupt:
            sys.exit(143)
    sys.exit("usage: python -m soundclr.book.reproduce --train-worker '<json>' (used by soundclr reproduce)")
