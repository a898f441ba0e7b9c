"""The Jupyter Book: its shell (config, toc, hand-written pages) and the built result.

- The fast tests build a book in a temporary copy from the hand-written pages plus
  tiny fake executed notebooks, and check it with ``tests/bookcheck.py``, statically
  and in headless Chromium; a negative test breaks a copy of it on purpose and checks
  that every kind of breakage is reported.
- ``test_real_book`` (marker ``book``) checks the book that ``make book`` built in
  ``_build/html``: every page present, the paper's figures and tables on the
  generated pages, no broken image or link, formulas typeset offline.
"""
from __future__ import annotations

import html as htmllib
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bookcheck  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HAND_WRITTEN = ["intro", "method", "differences", "synthetic", "results", "tuning", "reproduce", "own-method", "api", "references"]
NOTEBOOK_PAGES = ["claims", "augmentations", "training-ce", "training-supcon", "training-hybrid", "results",
                  "representations", "robustness", "ablation"]
# The paper's figures and tables that the executed notebooks must show, per dataset.
LABELS = ["Fig. 2", "Fig. 3", "Fig. 4", "Fig. 5", "Table I", "Table II", "Table III", "Table IV", "UMAP"]
FIGURE_PAGES = ["augmentations", "results", "representations", "robustness", "ablation"]


def _require_chromium() -> None:
    if bookcheck.find_chromium() is None:
        if os.environ.get("SOUNDCLR_REQUIRE_BOOK", "") not in ("", "0"):
            pytest.fail("Chromium is not installed: `apt-get install -y chromium` (tests/setup_browser.py does it)")
        pytest.skip("Chromium is not installed: `apt-get install -y chromium` (tests/setup_browser.py does it)")


def _jupyter_book() -> str:
    exe = Path(sys.executable).with_name("jupyter-book")
    found = str(exe) if exe.is_file() else shutil.which("jupyter-book")
    if not found:
        pytest.fail("jupyter-book is not installed in this environment: pip install -e '.[book]'")
    return found


# -- a tiny fake executed notebook --------------------------------------------------------

def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid RGB PNG of one colour (stdlib only)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _executed_notebook(title: str, label: str) -> nbformat.NotebookNode:
    """What papermill leaves behind: markdown, code, and outputs (a PNG and an HTML table)."""
    import base64
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    code = nbformat.v4.new_code_cell("plot()", execution_count=1)
    code.outputs = [
        nbformat.v4.new_output("display_data", data={
            "image/png": base64.b64encode(_png(64, 48, (40, 120, 200))).decode("ascii"),
            "text/plain": "<Figure size 640x480 with 1 Axes>"}),
        nbformat.v4.new_output("display_data", data={
            "text/html": f"<table><caption>{label}</caption><tr><td>hybrid</td><td>93.4</td></tr></table>",
            "text/plain": label}),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\nWhat does this page show? {label}, with $x^2$."), code]
    return nb


FAKE = {  # dataset -> notebooks; synthetic's are listed out of reading order on purpose
    "synthetic": ["results", "ablation", "augmentations", "training-hybrid", "zz-extra"],
    "esc50": ["results"],
    "mydata": ["results"],  # a dataset the toc does not name
}


@pytest.fixture(scope="module")
def fake_book(tmp_path_factory):
    """A book built from this repository's shell and pages plus fake generated notebooks.

    Returns (html folder, build log).
    """
    src = tmp_path_factory.mktemp("book-src")
    for name in ("_config.yml", "_toc.yml", "references.bib"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "book", src / "book", ignore=shutil.ignore_patterns("generated", "__pycache__"))
    # autodoc imports the library and the method page includes its source.
    shutil.copytree(ROOT / "soundclr", src / "soundclr", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "examples", src / "examples")          # the chapter on your own method includes its example
    for dataset, notebooks in FAKE.items():
        folder = src / "book" / "generated" / dataset
        folder.mkdir(parents=True)
        for name in notebooks:
            nbformat.write(_executed_notebook(f"{name.capitalize()} ({dataset})", "Table III"),
                           folder / f"{name}.ipynb")
    # What `soundclr reproduce` leaves when a notebook fails or is still running: not pages.
    for leftover in ("robustness.failed.ipynb", ".representations.running.ipynb"):
        nbformat.write(_executed_notebook("Leftover", "Table III"), src / "book" / "generated" / "synthetic" / leftover)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOUNDCLR_MATHJAX")}
    proc = subprocess.run([_jupyter_book(), "build", str(src)], cwd=src, env=env,
                          capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"jupyter-book build failed:\n{log[-4000:]}"
    return src / "_build" / "html", log


def _sidebar_order(page: Path) -> list[str]:
    """Generated pages in the order the sidebar lists them."""
    text = page.read_text(encoding="utf-8")
    hrefs = re.findall(r'href="([^"#]*generated/[^"#]+\.html)"', text)
    order: list[str] = []
    for h in hrefs:
        name = h.split("generated/", 1)[1][: -len(".html")]
        if name not in order:
            order.append(name)
    return order


def test_build_has_no_warnings_from_the_book_shell(fake_book):
    _, log = fake_book
    lines = [line for line in log.splitlines() if re.search(r"WARNING|ERROR|CRITICAL", line)]
    # Formatting slips in the library's docstrings belong to the library's tests; anything
    # from the pages, the configuration, the toc or the bibliography belongs here.
    ours = [line for line in lines if "soundclr/" not in line.split("WARNING")[0].split("ERROR")[0]
            or "failed to import" in line]
    assert ours == [], "warnings from the book's own files:\n" + "\n".join(ours)


def test_every_page_is_built_and_generated_pages_follow_reading_order(fake_book):
    html, _ = fake_book
    for name in HAND_WRITTEN:
        assert (html / "book" / f"{name}.html").is_file(), f"book/{name}.md was not built"
    assert (html / "index.html").is_file()
    order = _sidebar_order(html / "book" / "intro.html")
    # Per dataset, in the toc's reading order; a notebook the toc does not name comes last.
    assert order == ["esc50/results", "synthetic/augmentations", "synthetic/training-hybrid",
                     "synthetic/results", "synthetic/ablation", "synthetic/zz-extra", "mydata/results"], order
    built = sorted(p.name for p in (html / "book" / "generated" / "synthetic").glob("*.html"))
    assert built == sorted(f"{n}.html" for n in FAKE["synthetic"]), built
    intro = (html / "book" / "intro.html").read_text(encoding="utf-8")
    assert "Results: ESC-50" in intro and "Results: synthetic data" in intro and "Results: other datasets" in intro
    assert "Results: ESC-10" not in intro and "Results: UrbanSound8K" not in intro, \
        "a dataset with no generated pages must not get a part in the sidebar"


def test_method_page_links_each_equation_to_its_code(fake_book):
    html, _ = fake_book
    method = (html / "book" / "method.html").read_text(encoding="utf-8")
    for target in ("soundclr.losses.cross_entropy_loss", "soundclr.losses.supcon_loss",
                   "soundclr.losses.hybrid_loss", "soundclr.model.SoundCLRModel", "soundclr.model.build_model",
                   "soundclr.train.step.scheme_loss", "soundclr.train.loop.train_run", "soundclr.audio.pipeline.Pipeline",
                   "soundclr.audio.transforms.SilenceTrim", "soundclr.audio.transforms.RandomScale", "soundclr.audio.transforms.PadCrop",
                   "soundclr.audio.transforms.LogMel", "soundclr.audio.transforms.FreqTimeMask", "soundclr.audio.transforms.ToChannels"):
        assert f'href="api.html#{target}"' in method, f"the method page does not link to {target} on the API page"
    # The implementing code is shown on the page itself (literalinclude), not fetched.
    assert "def supcon_loss(" in htmllib.unescape(re.sub(r"<[^>]+>", "", method))
    api = (html / "book" / "api.html").read_text(encoding="utf-8")
    assert 'href="../_modules/soundclr/losses.html#supcon_loss"' in api, "no [source] link (sphinx.ext.viewcode)"
    assert (html / "_modules" / "soundclr" / "losses.html").is_file()


def test_fake_book_has_no_problem_statically_or_in_chromium(fake_book):
    html, _ = fake_book
    assert bookcheck.static_problems(html) == []
    _require_chromium()
    pages = ["index.html", "book/intro.html", "book/method.html", "book/api.html", "book/references.html",
             "book/generated/synthetic/results.html", "book/generated/esc50/results.html"]
    report = bookcheck.open_in_browser(html, pages=pages)
    assert bookcheck.report_problems(report) == []
    seen = {r["page"].lstrip("/"): r for r in report.pages}
    assert set(seen) == set(pages), "the browser did not report on every page it was given"
    # The checks did look: the notebook's PNG decoded, and MathJax (shipped in the book) typeset.
    assert seen["book/generated/synthetic/results.html"]["images"] >= 1
    assert seen["book/method.html"]["math"] >= 5 and seen["book/method.html"]["untypeset_math"] == 0
    assert seen["book/method.html"]["mathjax"] is True
    assert (html / "_static" / "mathjax" / "tex-chtml.js").is_file()


BROKEN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>broken</title></head><body>
<img src="missing.png" alt="a file that does not exist">
<img src="corrupt.png" alt="a file that exists but is not an image">
<img src="https://example.invalid/remote.png" alt="a remote image">
<a href="intro.html#no-such-anchor">an anchor that does not exist</a>
<a href="nowhere.html">a page that does not exist</a>
<a href="intro.html">a good link</a> <a href="https://example.invalid/">a link to another site is fine</a>
<span class="math notranslate nohighlight">\\(x^2\\)</span>
<article><div style="height:1200px">provenance and run counts</div><p>What it cannot test: anything on ESC-50.</p></article>
</body></html>
"""


def test_checker_reports_broken_images_links_and_math(fake_book, tmp_path):
    html, _ = fake_book
    broken = tmp_path / "html"
    shutil.copytree(html, broken)
    (broken / "book" / "broken.html").write_text(BROKEN_PAGE, encoding="utf-8")
    (broken / "book" / "corrupt.png").write_bytes(b"this is not a PNG file")
    # An image of a generated page whose file went missing after the build.
    page = broken / "book" / "generated" / "synthetic" / "results.html"
    image = re.search(r'<img[^>]+src="([^"]+)"', page.read_text(encoding="utf-8")).group(1)
    (page.parent / image).resolve().unlink()

    static = bookcheck.static_problems(broken)
    expected_static = {
        "missing.png": "broken image", "example.invalid/remote.png": "another host",
        "no-such-anchor": "no element with id", "nowhere.html": "does not exist", image: "broken image"}
    for needle, kind in expected_static.items():
        assert any(needle in p and kind in p for p in static), f"{needle!r} ({kind}) not reported:\n" + "\n".join(static)
    assert not any("corrupt.png" in p for p in static), "a corrupt image file exists, so only a browser can tell"
    assert not any("href='intro.html'>" in p or "href='https://example.invalid/'>" in p for p in static), static

    _require_chromium()
    problems = bookcheck.browser_problems(broken, pages=["book/broken.html",
                                                         "book/generated/synthetic/results.html"])
    for needle in ("'corrupt.png'", "'missing.png'", "remote.png", image):
        assert any(needle in p and "broken image" in p for p in problems), f"{needle} not reported:\n" + "\n".join(problems)
    assert any("book/broken.html" in p and "not typeset" in p and "MathJax did not load" in p for p in problems), problems
    assert any("HTTP 404" in p and "missing.png" in p for p in problems), problems
    assert any("book/broken.html: 'What it cannot test' ends" in p and "below the first screen" in p
               for p in problems), problems


# -- the real book ------------------------------------------------------------------------

def _article_text(page: Path) -> str:
    """The words of a page's main article (not the sidebar, which lists every page's title)."""
    body = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", _article(page.read_text(encoding="utf-8")), flags=re.S)
    words = htmllib.unescape(re.sub(r"<[^>]+>", " ", body)).replace("\xa0", " ")
    return re.sub(r"\s+", " ", words)


PAGE_NAMES = r"(claims|tuning|ablation|results|robustness|augmentations|representations|reproducing|training)"


def _article(page_html: str) -> str:
    """The HTML of a page's main article (the whole page when it has none)."""
    m = re.search(r"<article[^>]*>(.*)</article>", page_html, flags=re.S)
    return m.group(1) if m else page_html


def _prose_html(body: str) -> str:
    """``body`` without what is not prose: scripts, styles, code (``<pre>``, ``<code>``) and input cells."""
    body = re.sub(r"<(script|style|pre|code)[^>]*>.*?</\1>", " ", body, flags=re.S)
    return re.sub(r'<div class="[^"]*cell_input[^"]*".*?</div>\s*</div>', " ", body, flags=re.S)


def prose_problems(page_html: str, where: str) -> list[str]:
    """Raw Markdown backticks in a page's prose, and mentions of another page ("the tuning page")
    that are not links. Code (``<pre>``, ``<code>``) and the input cells are not prose."""
    body = _prose_html(_article(page_html))
    problems = []
    prose = htmllib.unescape(re.sub(r"<[^>]+>", " ", body))
    if "`" in prose:
        at = prose.index("`")
        problems.append(f"{where}: raw backticks in the text ({prose[max(0, at - 40):at + 40].strip()!r})")
    unlinked = htmllib.unescape(re.sub(r"<[^>]+>", " ", re.sub(r"<a\b[^>]*>.*?</a>", " ", body, flags=re.S)))
    for hit in re.finditer(rf"\bthe {PAGE_NAMES} page\b", unlinked, flags=re.I):
        problems.append(f"{where}: mentions {hit.group(0)!r} without a link")
        break
    return problems


DASHES = "\u2010\u2011\u2012\u2013\u2014\u2212"     # hyphen, non-breaking hyphen, figure/en/em dash, minus
# Internal run and variant names a reader should never meet in prose (the pages name settings in words).
INTERNAL_NAMES = re.compile(r"\b(F\d+T\d+f\d+t\d+|(ce|supcon|hybrid)-fold\d+|fill-(zero|min|mean)|alpha0\.\d+|"
                            r"(random|imagenet)-\dch(-[a-z-]+)?)\b")
# An interval "[low, high]": signed (a difference) or unsigned (an accuracy, which must stay inside 0-100).
INTERVAL = re.compile(r"\[\s*([+-]?)(\d+(?:\.\d+)?)\s*,\s*([+-]?)(\d+(?:\.\d+)?)\s*\]")


def defect_problems(page_html: str, where: str) -> list[str]:
    """The reader's defect classes, in a built page: a non-ASCII dash in code or a command (a copied
    command fails), an accuracy interval outside [0, 100], a zero-width interval, a link to the page itself
    next to "left out"/"leaves out", a raw "[N]" citation, an internal run name in the prose."""
    problems = []
    body = _article(page_html)
    for code in re.findall(r"<(pre|code)[^>]*>(.*?)</\1>", body, flags=re.S):
        text = htmllib.unescape(re.sub(r"<[^>]+>", "", code[1]))
        bad = [c for c in DASHES if c in text]
        if bad:
            at = text.index(bad[0])
            problems.append(f"{where}: a non-ASCII dash in code ({text[max(0, at - 30):at + 30].strip()!r}): "
                            "a reader who copies it gets an error")
            break
    prose = re.sub(r"\s+", " ", htmllib.unescape(re.sub(r"<[^>]+>", " ", _prose_html(body))))
    flag = re.search(rf"(^|\s)[{DASHES}]{{1,2}}[a-z][a-z-]+", prose)
    if flag and re.search(r"\b(soundclr|make|papermill|python|--?\w)", prose[max(0, flag.start() - 80):flag.start()]):
        problems.append(f"{where}: a command-line flag written with a typographic dash ({flag.group(0).strip()!r})")
    for hit in INTERVAL.finditer(prose):
        s1, lo, s2, hi = hit.groups()
        low, high = float(s1 + lo if s1 else lo), float(s2 + hi if s2 else hi)
        if low == high:
            problems.append(f"{where}: a zero-width interval {hit.group(0)!r} presented as an interval")
        elif not s1 and not s2 and high > 100 and "%" in prose[hit.end():hit.end() + 40] + prose[max(0, hit.start() - 80):hit.start()]:
            problems.append(f"{where}: an accuracy interval {hit.group(0)!r} reaches past 100 %: use an interval that "
                            "respects the bounds (Wilson), or say why not")
    name = where.rsplit("/", 1)[-1]
    for a in re.finditer(r'<a\b([^>]*)href="([^"]*)"[^>]*>(.*?)</a>', body, flags=re.S):
        if "headerlink" in a.group(0)[:a.group(0).index(">")]:
            continue                         # a heading's own permalink
        target, text = a.group(2).split("#")[0], a.group(3)
        before = htmllib.unescape(re.sub(r"<[^>]+>", " ", body[max(0, a.start() - 200):a.start()]))
        if target in ("", name, f"./{name}") and re.search(r"(left|leaves?) out", before + text):
            problems.append(f"{where}: 'left out' links to the page itself ({htmllib.unescape(text).strip()!r})")
    cited = re.search(r"[A-Z][\w-]*\)?\s\[[1-9]\d?(,\s*[1-9]\d?)*\]", prose)
    if cited:
        problems.append(f"{where}: a raw citation number {cited.group(0)!r}: name the work (author, year)")
    internal = INTERNAL_NAMES.search(prose)
    if internal:
        problems.append(f"{where}: an internal run name {internal.group(0)!r} in the prose: say it in words")
    return problems


def figure_text_problems(html: Path, smallest_px: float = 8.0) -> list[str]:
    """Figures of the generated pages whose smallest text is under ``smallest_px`` at the image's own size (the
    browser check separately fails any figure the text column shows smaller than that): each PNG records it
    (``soundclr.book.figures.TEXT_SIZE_KEY``, written when the notebook draws it); a figure without the record
    was drawn outside the book's formatter and is reported too."""
    from soundclr.book.figures import TEXT_SIZE_KEY
    problems = []
    for page in sorted((html / "book" / "generated").rglob("*.html")):
        for src in sorted(set(re.findall(r'<img[^>]*src="([^"]+\.png)"', page.read_text(encoding="utf-8")))):
            png = (page.parent / src).resolve()
            if not png.is_file():
                continue                     # a broken image: the static check reports it
            size = png_text(png.read_bytes()).get(TEXT_SIZE_KEY)
            where = f"{page.relative_to(html)}: figure {src.rsplit('/', 1)[-1][:16]}..."
            if size is None:
                problems.append(f"{where} does not record its smallest text ({TEXT_SIZE_KEY}): draw it through the "
                                "book's inline formatter (soundclr.book.page.setup)")
            elif float(size) < smallest_px:
                problems.append(f"{where} has text {float(size):.1f} px high (under {smallest_px:g} px): enlarge it")
    return problems


def png_text(data: bytes) -> dict[str, str]:
    """The tEXt chunks of a PNG, read with the standard library."""
    out, at = {}, 8
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        if kind == b"tEXt":
            key, _, value = data[at + 8:at + 8 + length].partition(b"\0")
            out[key.decode("latin-1")] = value.decode("latin-1")
        if kind == b"IEND":
            break
        at += 12 + length
    return out


def real_book_problems(html: Path, generated: Path, *, browser: bool = True, convergence: bool = True) -> list[str]:
    """Everything wrong with a built book whose notebooks were executed into ``generated``."""
    problems: list[str] = []
    for page in sorted((html / "book").rglob("*.html")):
        text, where = page.read_text(encoding="utf-8"), str(page.relative_to(html))
        problems += prose_problems(text, where) + defect_problems(text, where)
    problems += figure_text_problems(html)
    for name in HAND_WRITTEN:
        if not (html / "book" / f"{name}.html").is_file():
            problems.append(f"book/{name}.html is missing: book/{name}.md was not built")
    built = html / "book" / "generated"
    datasets = sorted(p.name for p in built.iterdir() if p.is_dir()) if built.is_dir() else []
    if not datasets:
        problems.append("the built book has no generated pages (_build/html/book/generated/ is empty): "
                        "run `make book`, which executes the notebooks before building")
    for dataset in datasets:
        for source in sorted((generated / dataset).glob("*.ipynb")):
            if not (built / dataset / f"{source.stem}.html").is_file():
                problems.append(f"{dataset}/{source.name} has no page in the built book: the build is stale, "
                                f"rebuild with `jupyter-book build .`")
        missing = [n for n in NOTEBOOK_PAGES if not (built / dataset / f"{n}.html").is_file()]
        if missing:
            problems.append(f"{dataset}: no page for the notebooks {missing}")
        pages = sorted((built / dataset).glob("*.html"))
        text = " ".join(_article_text(p) for p in pages)
        for label in LABELS:
            # "Table I" must not match "Table II"; "UMAP" may be "UMAPs".
            end = r"(?!\w)" if label[-1] in "0123456789IV" else ""
            if not re.search(r"\b" + re.escape(label) + end, text):
                problems.append(f"{dataset}: no generated page mentions {label!r}")
        for name in FIGURE_PAGES:
            page = built / dataset / f"{name}.html"
            if page.is_file() and "<img" not in page.read_text(encoding="utf-8"):
                problems.append(f"{dataset}/{name}.html shows no figure")
        for page in pages:
            if re.search(r'class="[^"]*\btraceback\b', page.read_text(encoding="utf-8")):
                problems.append(f"{page.relative_to(html)} shows a Python traceback")
    problems += reader_problems(html, generated, datasets, convergence=convergence)
    if not browser:
        return problems + bookcheck.static_problems(html)
    if bookcheck.find_chromium() is None:
        problems.append("Chromium is not installed, so the book could not be opened in a browser: "
                        "`apt-get install -y chromium` (tests/setup_browser.py does it)")
        return problems + bookcheck.static_problems(html)
    return problems + bookcheck.check_built_book(html)


PARAMETER_LINES = ('preset = "', "interactive = ", "data_root = ")   # the notebooks' parameters cell


def reader_problems(html: Path, generated: Path, datasets: list[str], *, convergence: bool = True) -> list[str]:
    """What a reader must not see, and what the evidence needs: a parameters cell on a generated
    page, "+-" in a table, a module missing from the API page, a claim missing from a Claims page,
    and an unconverged main-grid run behind the pages."""
    import pkgutil

    import soundclr
    problems = []
    for dataset in datasets:
        for page in sorted((html / "book" / "generated" / dataset).glob("*.html")):
            text = page.read_text(encoding="utf-8")
            body = htmllib.unescape(re.sub(r"<[^>]+>", "", text))
            if "are not all finished yet" in body:
                problems.append(f"{page.relative_to(html)} says its runs are unfinished: the build is stale or trained "
                                "too little; train them and rebuild")
            shown = [line for line in PARAMETER_LINES if line in body]
            if shown:
                problems.append(f"{page.relative_to(html)} shows a parameters cell ({shown[0]!r}...): tag it remove-cell")
            for table in re.findall(r"<table.*?</table>", text, flags=re.S):
                if "+-" in htmllib.unescape(re.sub(r"<[^>]+>", "", table)):
                    problems.append(f"{page.relative_to(html)}: a table writes '+-' instead of '±'")
                    break
        claims_page = html / "book" / "generated" / dataset / "claims.html"
        if claims_page.is_file():
            from soundclr.analysis.claims import CLAIM_IDS
            text = _article_text(claims_page)
            missing = [c for c in CLAIM_IDS if not re.search(rf"\b{c}\b", text)]
            if missing:
                problems.append(f"{dataset}: the Claims page lacks the claims {missing}")
            problems += _ledger_problems(claims_page.read_text(encoding="utf-8"), dataset)
        if convergence:
            problems += _convergence_problems(generated / dataset / "claims.ipynb", dataset)
    api = html / "book" / "api.html"
    if api.is_file():
        text = api.read_text(encoding="utf-8")
        modules = [m.name for m in pkgutil.iter_modules(soundclr.__path__) if not m.name.startswith("_")]
        missing = [m for m in modules if f"soundclr.{m}" not in text]
        if missing:
            problems.append(f"book/api.html does not document the modules {missing}")
    return problems


def _ledger_problems(page: str, dataset: str) -> list[str]:
    """Every tested claim in the Claims page's ledger shows its fold-level interval, its corrected
    interval and the effect it could detect; every power figure has its conservative counterpart; every
    interval's level label is its level (and a symmetric fold interval's width is the t interval's at that
    level, recomputed from the row's SD, folds and correction); a claim that holds by design is never
    counted as supported; no comparison's two sides trained different schedules."""
    import scipy.stats

    from soundclr.analysis.claims import BY_DESIGN, CLAIMS
    problems = []
    table = re.search(r'<table class="claims-ledger">.*?</table>', page, flags=re.S)
    if not table:
        return [f"{dataset}: the Claims page has no ledger table"]
    for attrs, row in re.findall(r"<tr([^>]*)>(.*?)</tr>", table.group(0), flags=re.S)[1:]:
        data = dict(re.findall(r'data-(\w+)="([^"]*)"', attrs))
        cells = [htmllib.unescape(re.sub(r"<[^>]+>", " ", c)) for c in re.findall(r"<td>(.*?)</td>", row, flags=re.S)]
        if len(cells) < 4:
            problems.append(f"{dataset}: a ledger row has {len(cells)} cells: {cells[:1]}")
            continue
        cid = cells[0].split()[0]
        if cid in CLAIMS and CLAIMS[cid].by_design and "not testable" not in cells[3] and BY_DESIGN not in cells[3]:
            problems.append(f"{dataset}: claim {cid} holds by design but its verdict reads {cells[3].split()[0]!r}")
        if "not testable" in cells[3] or BY_DESIGN in cells[3]:
            continue
        fold_level = "uncorrected [" in cells[2] and re.search(r"\d+ folds", cells[2])
        if not (fold_level or "clips per fold" in cells[2] or "no interval" in cells[2]):   # one fold: none
            problems.append(f"{dataset}: claim {cid} lacks its fold-level interval")
        if not re.search(r"[-+]?\d[\d.,]* \w+ \[[-+]?\d", cells[2]) and "no interval" not in cells[2]:
            problems.append(f"{dataset}: claim {cid} lacks its corrected interval")
        if not any(w in cells[2] for w in ("detects", "not detectable", "no interval", "non-inferiority power")):
            problems.append(f"{dataset}: claim {cid} lacks the effect it could detect")
        for figure in ("detects", "power at the paper's"):
            if figure in cells[2] and "(simulated)" not in cells[2]:
                problems.append(f"{dataset}: claim {cid}: '{figure}' is not the simulated figure of the ledger's rule")
        detectable = data.get("detectable", "")
        try:
            too_big = abs(float(detectable)) > 100 and "not detectable" not in cells[2]
        except ValueError:
            too_big = False
        if too_big or re.search(r"detects (\d{3,}|[1-9]\d{2,})\.\d+", cells[2]):
            problems.append(f"{dataset}: claim {cid} states a detectable effect above 100 points instead of "
                            "'not detectable with N folds'")
        problems += _level_problems(cells[2], data, f"{dataset}: claim {cid}", scipy.stats)
    summary = re.search(r"Supported: ([^.]*)\.", htmllib.unescape(re.sub(r"<[^>]+>", "", page)))
    if summary:
        wrong = [c for c in re.findall(r"C\d+\w?", summary.group(1)) if c in CLAIMS and CLAIMS[c].by_design]
        if wrong:
            problems.append(f"{dataset}: the summary counts {wrong} as supported, but they hold by design")
    if "Not the same schedule" in page:
        problems.append(f"{dataset}: a comparison on the Claims page trained its two sides on different schedules")
    return problems


def _level_problems(cell: str, data: dict, where: str, stats) -> list[str]:
    """An interval's label against its level (``data-level``), and a symmetric fold-level interval's width
    against the t interval at that level from the row's ``data-sd``, ``data-n`` and ``data-ratio``."""
    m = re.search(r"([-+]?\d+\.?\d*) \w+ \[([-+]?\d+\.?\d*), ([-+]?\d+\.?\d*)\] \(([\d.]+) %", cell)
    if not m or "level" not in data:
        return []
    effect, low, high, label = (float(x) for x in m.groups())
    level = float(data["level"])
    if abs(label - 100 * level) > 0.006:          # the label rounds to two decimals
        return [f"{where}: the interval is labelled {label:g} % but computed at {100 * level:g} %"]
    if data.get("design") != "folds" or abs((high - effect) - (effect - low)) > 0.02:    # asymmetric: a composite bound
        return []
    n, sd, ratio = int(float(data["n"])), float(data["sd"]), float(data["ratio"])
    rule = data.get("rule") or "nb"
    floor = float(data.get("floor") or "nan")
    if rule.startswith("floor") and floor == floor:       # the rule's SD: never below the noise floor
        sd = max(sd, floor)
    half = stats.t.ppf(0.5 + level / 2, n - 1) * sd * (1 / n + (ratio if rule.endswith("nb") else 0.0)) ** 0.5
    if abs((high - low) / 2 - half) > 0.011 + 1e-3 * half:
        return [f"{where}: the interval's half-width {(high - low) / 2:.2f} is not the {label:g} % t interval's {half:.2f}"]
    return []


def _convergence_problems(notebook: Path, dataset: str) -> list[str]:
    """Every main-grid run behind a dataset's pages must pass soundclr.analysis.convergence.convergence."""
    if not notebook.is_file():
        return []
    from soundclr.analysis.convergence import main_grid_convergence
    from soundclr.book.plan import make_plan
    params = nbformat.read(notebook, as_version=4).metadata.get("papermill", {}).get("parameters", {})
    if not params:
        return [f"{notebook}: no papermill parameters: cannot tell which runs the pages show"]
    keys = ("dataset", "preset", "size", "device", "results", "data_root", "epochs", "folds", "seeds")
    p = {k: params.get(k) for k in keys}
    plan = make_plan(p["dataset"], p["preset"], size=p["size"], device=p["device"] or "auto", results=p["results"],
                     data_root=p["data_root"], epochs=p["epochs"], folds=p["folds"], seeds=p["seeds"])
    conv = main_grid_convergence(plan)
    if conv.empty:
        return [f"{dataset}: no finished main-grid run in {p['results']}"]
    return [f"{dataset}: main-grid run {r.scheme} fold {r.fold} seed {r.seed} has not converged: {r.reasons}"
            for r in conv.itertuples() if not r.converged]


def test_real_book_checks_report_missing_pages_labels_and_stale_builds(fake_book):
    html, _ = fake_book
    generated = html.parent.parent / "book" / "generated"
    (generated / "esc50" / "training-ce.ipynb").write_text("{}")  # executed after the build: stale
    problems = real_book_problems(html, generated, browser=False)
    assert "esc50/training-ce.ipynb has no page in the built book: the build is stale, rebuild with " \
           "`jupyter-book build .`" in problems
    assert "synthetic: no page for the notebooks ['claims', 'training-ce', 'training-supcon', 'representations', " \
           "'robustness']" in problems, problems
    for label in ("Fig. 2", "Fig. 5", "Table I", "Table II", "UMAP"):
        assert f"synthetic: no generated page mentions {label!r}" in problems
    assert "synthetic: no generated page mentions 'Table III'" not in problems
    assert not any("shows no figure" in p or "traceback" in p for p in problems), problems


def test_reader_checks_catch_parameters_plus_minus_and_missing_claims(fake_book, tmp_path):
    html, _ = fake_book
    copy = tmp_path / "html"
    shutil.copytree(html, copy)
    page = copy / "book" / "generated" / "esc50" / "results.html"
    text = page.read_text(encoding="utf-8")
    page.write_text(text.replace("</article>", '<pre>preset = "quick"</pre><table><tr><td>91.2 +- 0.4</td></tr></table>'
                                               "</article>"), encoding="utf-8")
    (copy / "book" / "generated" / "esc50" / "claims.html").write_text(
        "<html><body><article>C1 the hybrid beats cross-entropy; C2 ...</article></body></html>", encoding="utf-8")
    problems = reader_problems(copy, tmp_path / "no-notebooks", ["esc50"])
    assert any("results.html shows a parameters cell" in p for p in problems), problems
    assert any("results.html: a table writes '+-'" in p for p in problems), problems
    assert any(p.startswith("esc50: the Claims page lacks the claims ['C3'") for p in problems), problems
    assert not any("synthetic" in p for p in problems)


@pytest.mark.book
def test_real_book():
    html = ROOT / "_build" / "html"
    if not html.is_dir():
        if os.environ.get("SOUNDCLR_REQUIRE_BOOK", "") not in ("", "0"):
            pytest.fail("SOUNDCLR_REQUIRE_BOOK is set but there is no built book at _build/html: run `make book`")
        pytest.skip("no built book at _build/html: run `make book` first (SOUNDCLR_REQUIRE_BOOK=1 makes this a failure)")
    problems = real_book_problems(html, ROOT / "book" / "generated")
    assert problems == [], f"{len(problems)} problem(s) in _build/html:\n" + "\n".join(problems)


def test_the_ledger_check_finds_missing_statistics_and_unfair_comparisons():
    """_ledger_problems on a ledger table made by soundclr.analysis.evidence: clean, then with each piece removed."""
    import pandas as pd

    from soundclr.analysis import rows
    from soundclr.analysis.stats import fold_interval
    from soundclr.book import conclusions, prose
    from soundclr.config import preset

    class Plan:
        config = preset("quick")
    L = rows.Evidence(Plan())
    figures = {"power": 0.31, "power_mc": 0.01, "detectable": 4.2, "size": 0.02, "size_mc": 0.003,
               "power_band": (0.2, 0.4), "detectable_band": (3.5, 6.0)}
    L.add("C1", fold_interval([1.0, 2.0, 0.5, 1.5, 3.0], ratio=0.25, floor_var=1.0).with_figures(figures), runs=20,
          same_schedule=True)
    L.untestable("C5a", "not testable offline")
    led = pd.DataFrame(L.rows)
    led["p_holm"] = led["p"]
    page = prose.ledger_html(led, "synthetic")
    assert _ledger_problems(page, "synthetic") == []
    assert "claim C1 lacks the effect it could detect" in " ".join(_ledger_problems(page.replace("detects", "finds"), "s"))
    assert "claim C1 lacks its fold-level interval" in " ".join(_ledger_problems(page.replace("uncorrected", "plain"), "s"))
    unfair = page + conclusions.fairness_text(led.assign(same_schedule=False), Plan())
    assert any("different schedules" in p for p in _ledger_problems(unfair, "s"))
    # a power figure that is not the simulated one, and a detectable effect above 100 points
    bare = page.replace(" (simulated)", "")
    assert "'detects' is not the simulated figure" in " ".join(_ledger_problems(bare, "s"))
    huge = {**figures, "detectable": 199.39, "detectable_band": (150.0, math.inf)}
    L3 = rows.Evidence(Plan())
    L3.add("C1", fold_interval([1.0, 2.0, 0.5, 1.5, 3.0], ratio=0.25).with_figures(huge), runs=20, same_schedule=True)
    ok = prose.ledger_html(pd.DataFrame(L3.rows), "synthetic")
    assert "not detectable with 5 folds" in ok and _ledger_problems(ok, "s") == []
    planted = ok.replace("not detectable with 5 folds (no effect up to 100 points reaches 80 % power)",
                         "detects 199.39 points with 80 % power")
    assert "detectable effect above 100 points" in " ".join(_ledger_problems(planted, "s"))
    # an interval whose label is not its level, and one whose width is not the labelled level's
    assert "labelled 90 % but computed at 95 %" in " ".join(_ledger_problems(page.replace("(95 %)", "(90 %)"), "s"))
    wide = fold_interval([1.0, 2.0, 0.5, 1.5, 3.0], ratio=0.25, level=0.99, floor_var=1.0)
    L2 = rows.Evidence(Plan())
    L2.add("C1", wide, runs=20, same_schedule=True)
    mislabelled = prose.ledger_html(pd.DataFrame(L2.rows), "synthetic").replace('data-level="0.99"', 'data-level="0.95"')
    assert "is not the 95 % t interval's" in " ".join(_ledger_problems(mislabelled.replace("(99 %)", "(95 %)"), "s"))
    # a claim that holds by design, counted as supported (in its verdict, or in the summary)
    L.add("C8a", fold_interval([10.0, 12.0, 11.0, 13.0, 12.0], ratio=0.25), runs=20, same_schedule=True)
    led = pd.DataFrame(L.rows)
    led["p_holm"] = led["p"]
    page = prose.ledger_html(led, "synthetic")
    assert _ledger_problems(page, "synthetic") == []
    assert "holds by design but its verdict reads 'supported'" in " ".join(
        _ledger_problems(page.replace("holds by design", "supported"), "s"))
    summary = conclusions.summary_text(led, Plan())
    supported = re.search(r"Supported: ([^.]*)\.", summary)
    assert (supported is None or "C8a" not in supported.group(1)) and "C8a" in summary
    assert "counts ['C8a'] as supported" in " ".join(_ledger_problems(page + "<p>Supported: C1, C8a.</p>", "s"))


def test_prose_checks_find_raw_backticks_and_unlinked_page_mentions():
    ok = '<article><p>See <a href="tuning.html">the tuning page</a>; <code>x = `1`</code></p><pre>`a`</pre></article>'
    assert prose_problems(ok, "p") == []
    assert "raw backticks" in prose_problems("<article><p>the `tiny` backbone</p></article>", "p")[0]
    assert "without a link" in prose_problems("<article><p>as the Tuning page shows</p></article>", "p")[0]


def test_defect_checks_each_catch_one_planted_defect():
    """One planted failure per defect class of the reader's third pass, and a clean page that passes."""
    clean = ('<article><p>Run <code>soundclr train --set batch_size=16</code>; C1: +1.25 [-0.50, +3.00]; '
             'accuracy 91.20 % [88.10, 93.70] (95 %); in [0, 1]; see DenseNet (Palanisamy et al., 2020). '
             'What this preset leaves out: <a href="claims.html">the Claims page</a>.'
             '<a class="headerlink" href="#left-out">#</a></p></article>')
    assert defect_problems(clean, "book/generated/x/results.html") == []
    planted = {
        "a non-ASCII dash in code": clean.replace("--set", "\u2013set"),
        "a command-line flag written with a typographic dash": clean.replace("</article>", "<p>soundclr train "
                                                                              "\u2013cpus 2</p></article>"),
        "reaches past 100 %": clean.replace("[88.10, 93.70]", "[45.92, 125.33]"),
        "a zero-width interval": clean.replace("[88.10, 93.70]", "[87.50, 87.50]"),
        "'left out' links to the page itself": clean.replace('href="claims.html"', 'href="results.html"'),
        "a raw citation number": clean.replace("DenseNet (Palanisamy et al., 2020)", "DenseNet [23]"),
        "an internal run name": clean.replace("C1:", "F8T6f2t0 against F8T6f0t1:"),
    }
    for what, page in planted.items():
        found = defect_problems(page, "book/generated/x/results.html")
        assert len(found) == 1 and what in found[0], (what, found)


def test_figure_text_check_reads_each_png_record(tmp_path):
    """figure_text_problems: a figure drawn with 5-pt text fails, one with the book's style passes, one
    without the record fails; the record is what soundclr.book.figures.png_with_text_size writes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from soundclr.book import figures
    figures.style()
    page_dir = tmp_path / "book" / "generated" / "x"
    page_dir.mkdir(parents=True)
    images = {}
    for name, size in (("ok", 9), ("small", 5)):
        fig, ax = plt.subplots()
        ax.plot([0, 1])
        ax.set_title("a title", fontsize=size)
        ax.tick_params(labelsize=max(size, 8))
        images[name] = figures.png_with_text_size(fig)
        plt.close(fig)
    images["bare"] = _png(4, 4, (0, 0, 0))
    for name, data in images.items():
        (page_dir / f"{name}.png").write_bytes(data)
    assert float(png_text(images["small"])[figures.TEXT_SIZE_KEY]) == pytest.approx(5 * figures.DPI / 72, abs=0.01)
    (page_dir / "p.html").write_text("".join(f'<img src="{n}.png">' for n in images), encoding="utf-8")
    problems = figure_text_problems(tmp_path)
    assert len(problems) == 2, problems
    assert any("small.png" not in p and "does not record" in p for p in problems)
    assert any("6.9 px high (under 8 px)" in p for p in problems)
