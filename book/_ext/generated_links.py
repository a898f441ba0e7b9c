"""Sphinx extension (local to this book): links from the hand-written pages to a generated page of
whichever dataset this build generated.

    {gen}`the Claims page <claims>`

links to ``book/generated/<dataset>/claims`` for the first dataset that has that page (the
synthetic set, the offline default, first; then ESC-50, ESC-10, UrbanSound8K, then any other),
so that a build of one real dataset (``soundclr reproduce --dataset esc50``) has no dead link. Where
no dataset has the page, the text is shown without a link.
"""
from __future__ import annotations

import re
from pathlib import Path

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx

ORDER = ["synthetic", "esc50", "esc10", "us8k"]


def generated_page(srcdir: Path, page: str) -> str | None:
    """The docname of the first generated ``page`` (``book/generated/<dataset>/<page>``), or None."""
    root = srcdir / "book" / "generated"
    found = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    for dataset in [d for d in ORDER if d in found] + [d for d in found if d not in ORDER]:
        if (root / dataset / f"{page}.ipynb").is_file():
            return f"book/generated/{dataset}/{page}"
    return None


def gen_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    m = re.match(r"^(.*?)\s*<([\w-]+)>$", text, flags=re.S)
    label, page = (m.group(1), m.group(2)) if m else (text, text)
    env = inliner.document.settings.env
    docname = generated_page(Path(env.srcdir), page)
    if docname is None:
        return [nodes.Text(label)], []
    node = addnodes.pending_xref(rawtext, refdomain="std", reftype="doc", reftarget="/" + docname,
                                 refexplicit=True, refwarn=True, refdoc=env.docname)
    node += nodes.inline(label, label)
    return [node], []


def setup(app: Sphinx) -> dict:
    app.add_role("gen", gen_role)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
