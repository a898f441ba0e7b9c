"""Sphinx extension (local to this book): make the book build and read offline.

Three jobs, done when Sphinx starts (``config-inited``):

1. Put the book root (the repository root) on ``sys.path``, so ``automodule``
   on the API page imports ``soundclr`` from the working tree even when the
   package is not installed.
2. Ship MathJax inside the book. Sphinx loads MathJax from a CDN by default,
   so formulas would show as raw LaTeX without the internet. We look for a
   local MathJax 3 and copy it to ``_build/html/_static/mathjax/``:

   - the folder named by the environment variable ``SOUNDCLR_MATHJAX_DIR``
     (it must hold ``tex-chtml.js``), else
   - the copy shipped by the PyPI package ``sphinx-mathjax-offline``
     (MathJax 3.2.2; ``pip install sphinx-mathjax-offline``).

   When neither exists the build still succeeds, with a warning that says
   what to install; formulas then need the internet to render.
3. Point the theme's repository button at the clone's ``origin`` remote (a web
   address), unless ``_config.yml`` names one: the book does not hard-code where
   its source lives.
"""
from __future__ import annotations

import os
import shutil
import sys
from importlib import metadata
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.util import logging

logger = logging.getLogger(__name__)

MATHJAX_ENV = "SOUNDCLR_MATHJAX_DIR"
MATHJAX_PACKAGE = "sphinx-mathjax-offline"
MATHJAX_ENTRY = "tex-chtml.js"
# The other combined bundles in the package (svg output, full, speech, mml) are
# alternatives to tex-chtml.js, ~2 MB each, which the book never loads.
_UNUSED_BUNDLES = {
    "latest.js", "mml-chtml.js", "mml-svg.js", "node-main.js", "tex-chtml-full-speech.js",
    "tex-chtml-full.js", "tex-mml-chtml.js", "tex-mml-svg.js", "tex-svg-full.js", "tex-svg.js",
}


def find_mathjax() -> Path | None:
    """Return a local MathJax 3 folder holding ``tex-chtml.js``, or None."""
    env = os.environ.get(MATHJAX_ENV)
    if env:
        folder = Path(env)
        if not (folder / MATHJAX_ENTRY).is_file():
            raise RuntimeError(
                f"{MATHJAX_ENV}={env!r} does not hold {MATHJAX_ENTRY}: point it at a MathJax 3 "
                f"folder (the one with {MATHJAX_ENTRY}, input/ and output/), or unset it")
        return folder
    try:
        dist = metadata.distribution(MATHJAX_PACKAGE)
    except metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if f.name == MATHJAX_ENTRY and f.parent.name == "mathjax":
            return Path(dist.locate_file(f)).parent
    return None


def repository_url(root: Path) -> str | None:
    """The web address of this clone's ``origin`` (``git@github.com:o/r.git`` becomes
    ``https://github.com/o/r``), or None when there is none."""
    import subprocess
    try:
        r = subprocess.run(["git", "-C", str(root), "remote", "get-url", "origin"], capture_output=True, text=True,
                           timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    url = r.stdout.strip() if r.returncode == 0 else ""
    if url.startswith("git@") and ":" in url:
        host, path = url[4:].split(":", 1)
        url = f"https://{host}/{path}"
    url = url.removesuffix(".git")
    return url if url.startswith(("https://", "http://")) else None


def _on_config_inited(app: Sphinx, config: Config) -> None:
    root = str(Path(app.srcdir).resolve())
    if root not in sys.path:
        sys.path.insert(0, root)
    # The repository button links to where this clone came from (set `repository: url:` in
    # _config.yml to name another address); a clone without a web origin has no button.
    options = dict(config.html_theme_options or {})
    if not options.get("repository_url"):
        url = repository_url(Path(root))
        if url:
            options.update(repository_url=url, use_repository_button=True, path_to_docs="")
            config.html_theme_options = options

    folder = find_mathjax()
    app.offline_book_mathjax = folder  # type: ignore[attr-defined]
    if folder is None:
        logger.warning(
            "MathJax is not shipped with this book, so its formulas render only with internet "
            "access (MathJax then comes from a CDN). To make the book work offline, install "
            "MathJax locally: `pip install %s`, or set %s to a MathJax 3 folder.",
            MATHJAX_PACKAGE, MATHJAX_ENV, type="offline_book", subtype="mathjax")
        return
    # A path without "://" is taken relative to _static/ by Sphinx.
    config.mathjax_path = f"mathjax/{MATHJAX_ENTRY}"


def _on_build_finished(app: Sphinx, exception: Exception | None) -> None:
    folder = getattr(app, "offline_book_mathjax", None)
    if exception is not None or folder is None or app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / "mathjax"

    def ignore_unused(directory: str, names: list[str]) -> set[str]:
        return _UNUSED_BUNDLES.intersection(names) if Path(directory) == folder else set()

    shutil.copytree(folder, target, ignore=ignore_unused, dirs_exist_ok=True)


def setup(app: Sphinx) -> dict:
    # Priority 900: after sphinx.ext.mathjax and jupyter_book set their defaults.
    app.connect("config-inited", _on_config_inited, priority=900)
    app.connect("build-finished", _on_build_finished)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
