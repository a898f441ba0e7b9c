"""Run every notebook with papermill into ``book/generated/<dataset>/``, then build the book.

``soundclr reproduce --dataset esc50 --preset paper`` (and ``make book``, which
does it for the synthetic dataset on the quick preset). The notebooks read and
write the results store, so training runs already finished are skipped when
this is run again. A failed notebook stops everything with the cell's error;
its partly executed copy is kept as ``<name>.failed.ipynb`` for inspection.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (output name, notebook source, extra parameters): the training notebook runs once per scheme.
NOTEBOOKS = [
    ("augmentations", "augmentations", {}),
    ("training-ce", "training", {"scheme": "ce"}),
    ("training-supcon", "training", {"scheme": "supcon"}),
    ("training-hybrid", "training", {"scheme": "hybrid"}),
    ("results", "results", {}),
    ("representations", "representations", {}),
    ("robustness", "robustness", {}),
    ("ablation", "ablation", {}),
]

DATASET_TITLES = {"esc50": "ESC-50", "esc10": "ESC-10", "us8k": "UrbanSound8K", "synthetic": "synthetic dataset"}


class NotebookError(RuntimeError):
    """A notebook failed: names the notebook and the failing cell's error."""


def repo_root() -> Path:
    if not (ROOT / "notebooks").is_dir() or not (ROOT / "_config.yml").exists():
        raise NotebookError(f"the notebooks and the book are not next to the library ({ROOT}): "
                            "run from a clone of the repository installed with `pip install -e .` (the Makefile does this)")
    return ROOT


def run_notebooks(dataset: str, preset: str = "quick", *, device: str = "auto", results: str = "results",
                  data_root: str = "data", size: str | None = None, only: list[str] | None = None,
                  out_dir: Path | None = None) -> list[Path]:
    import nbformat
    import papermill

    root = repo_root()
    out_dir = Path(out_dir) if out_dir else root / "book" / "generated" / dataset
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"dataset": dataset, "preset": preset, "device": device, "size": size,
              "results": str(Path(results).resolve()), "data_root": str(Path(data_root).resolve())}
    written = []
    for name, source, extra in NOTEBOOKS:
        if only and name not in only:
            continue
        src = root / "notebooks" / f"{source}.ipynb"
        out = out_dir / f"{name}.ipynb"
        tmp = out_dir / f".{name}.running.ipynb"
        t0 = time.time()
        print(f"[reproduce] {dataset}: running {src.name} -> {out.relative_to(root) if out.is_relative_to(root) else out}", flush=True)
        try:
            papermill.execute_notebook(str(src), str(tmp), parameters={**params, **extra}, kernel_name="python3",
                                       cwd=str(root), progress_bar=False, log_output=False,
                                       stdout_file=sys.stdout)  # the notebooks' progress lines, as they come
        except papermill.PapermillExecutionError as err:
            failed = out_dir / f"{name}.failed.ipynb"
            os.replace(tmp, failed)
            raise NotebookError(f"notebook {src.name} ({name}) failed in cell {err.exec_count}: {err.ename}: {err.evalue}\n"
                                f"the executed copy is in {failed}") from None
        nb = nbformat.read(tmp, as_version=4)
        _for_the_book(nb, dataset, extra.get("scheme"))
        nbformat.write(nb, tmp)
        os.replace(tmp, out)
        (out_dir / f"{name}.failed.ipynb").unlink(missing_ok=True)
        print(f"[reproduce] {name}: {time.time() - t0:.0f} s", flush=True)
        written.append(out)
    return written


def _for_the_book(nb, dataset: str, scheme: str | None = None) -> None:
    """Name the dataset (and scheme) in the page's first heading, so the book's table of
    contents tells pages apart, and leave papermill's injected-parameters cell (machine
    paths) out of the page: the page states its settings in words."""
    from .experiment import SCHEME_LABEL

    label = DATASET_TITLES.get(dataset, dataset)
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("# "):
            first, _, rest = cell.source.lstrip().partition("\n")
            if scheme:
                first = f"{first}: {SCHEME_LABEL[scheme]}"
            if label not in first:
                first = f"{first} ({label})"
            cell.source = f"{first}\n{rest}"
            break
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")


def build_book(root: Path | None = None) -> Path:
    root = root or repo_root()
    exe = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(root)]
    print("[reproduce] building the book:", " ".join(cmd), flush=True)
    r = subprocess.run(cmd, cwd=root)
    if r.returncode != 0:
        raise NotebookError(f"jupyter-book build failed (exit {r.returncode}); see its output above")
    return root / "_build" / "html"


def reproduce(dataset: str = "synthetic", preset: str = "quick", *, device: str = "auto", results: str = "results",
              data_root: str = "data", size: str | None = None, build: bool = True, workers: int | None = None) -> Path | None:
    t0 = time.time()
    run_notebooks(dataset, preset, device=device, results=results, data_root=data_root, size=size)
    html = build_book() if build else None
    print(f"[reproduce] done in {time.time() - t0:.0f} s" + (f": open {html / 'index.html'}" if html else ""), flush=True)
    return html
