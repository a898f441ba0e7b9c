"""The library's architecture, checked: imports point one way (the import contract of pyproject.toml,
run with import-linter, against a layer order written out here too), no module is long, and an import
inside a function is only for a heavy optional package, with a comment saying why.

The contract is also the first step of ``make test``; this test makes ``pytest`` alone catch it, and
checks that the contract cannot pass vacuously (a backwards import is reported)."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")
MAX_LINES = 420
# Imports a function may make itself: optional packages of the book extra, heavy to import for a user
# who only trains (each such line carries a comment).
LAZY_OK = ("matplotlib", "ipywidgets", "nbformat", "papermill", "umap", "sklearn", "IPython")


def lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, capture_output=True, text=True,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def test_the_import_contract_holds():
    r = lint(ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "2 kept, 0 broken" in r.stdout


def test_a_backwards_import_breaks_the_contract(tmp_path):
    """The same contract on a copy of the library with one import against the direction (data imports
    train) and one cycle inside a package (audio.io imports audio.pipeline): both are reported."""
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "soundclr", copy / "soundclr", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    bank = copy / "soundclr" / "data" / "bank.py"
    bank.write_text(bank.read_text() + "\nfrom ..train import loop  # noqa: E402  (against the layers)\n")
    io = copy / "soundclr" / "audio" / "io.py"
    io.write_text(io.read_text() + "\nfrom . import pipeline  # noqa: E402  (a cycle)\n")
    r = lint(copy)
    assert r.returncode != 0
    assert "soundclr.data.bank -> soundclr.train.loop" in r.stdout and ".io -> .pipeline" in r.stdout, r.stdout[-3000:]


def modules() -> list[Path]:
    return sorted((ROOT / "soundclr").rglob("*.py"))


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_long(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines: split it by idea (at most {MAX_LINES})"


def test_imports_inside_functions_are_only_for_heavy_optional_packages():
    found = []
    for path in modules():
        text = path.read_text()
        lines = text.splitlines()
        tree = ast.parse(text)
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top:
                name = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                if isinstance(node, ast.ImportFrom) and node.level:
                    found.append(f"{where}: a soundclr import inside a function (import it at the top)")
                elif not (name or "").startswith(LAZY_OK):
                    found.append(f"{where}: `{name}` imported inside a function (import it at the top)")
                elif "#" not in lines[node.lineno - 1]:
                    found.append(f"{where}: `{name}` imported inside a function without a comment saying why")
    assert not found, "\n".join(found)


def test_no_module_imports_another_modules_private_names():
    """Between modules only public names: a name with a leading underscore is its module's own (issue 26)."""
    found = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                found += [f"{path.relative_to(ROOT)}:{node.lineno} imports {a.name} from {'.' * node.level}{node.module or ''}"
                          for a in node.names if a.name.startswith("_") and not a.name.endswith("__")]   # dunders: public
    assert found == [], "\n".join(found)
