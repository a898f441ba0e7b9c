"""Check a built Jupyter Book for broken images and links, statically and in Chromium.

    problems = check_built_book("_build/html")      # [] when all is well

Two checks, each returning a list of problems in words (page, what, why):

1. ``static_problems``: parse every HTML page and follow each ``<img src>``,
   ``<a href>``, ``<script src>``, stylesheet and media reference. A relative
   reference must name a file that exists, and an ``#anchor`` in a link must be
   an ``id`` in the target page. A page that loads an image, script,
   stylesheet or frame from another host is flagged: the book must read
   offline. (Links *to* other sites, ``<a href="https://...">``, are fine.)

2. ``browser_problems``: serve the book over HTTP on 127.0.0.1 and open every
   page in headless Chromium, with every host name but 127.0.0.1 made
   unresolvable, so the browser sees what an offline reader sees. A probe page
   loads each book page in a same-origin iframe, waits for it (and for
   MathJax), and reports images that did not decode (``naturalWidth == 0``)
   and formulas MathJax did not typeset. The server records every request it
   answered with an error, with the page that made it.

Command line: ``python tests/bookcheck.py [_build/html] [--no-browser]``, or
``--screenshot book/intro.html out.png`` to look at one page.
"""
from __future__ import annotations

import html.parser
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from urllib.parse import unquote, urlsplit

PROBE_PATH = "/__bookcheck__/probe.html"
REPORT_PATH = "/__bookcheck__/report"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Folders of a Sphinx build that hold assets or copies of sources, not pages.
SKIP_DIRS = {"_static", "_sources", "_images", ".doctrees", "_downloads"}
# Tags whose reference the browser *loads* (rather than a link the reader may follow).
LOADED = {("img", "src"), ("img", "srcset"), ("script", "src"), ("source", "src"), ("source", "srcset"),
          ("video", "src"), ("video", "poster"), ("audio", "src"), ("iframe", "src"), ("embed", "src"),
          ("object", "data"), ("input", "src"), ("track", "src")}
LOADED_LINK_RELS = {"stylesheet", "icon", "shortcut", "preload", "modulepreload", "apple-touch-icon", "manifest"}
IGNORED_SCHEMES = {"mailto", "javascript", "data", "tel", "blob", "about"}
# Phrases that, on any page holding them, must be visible on the first screen (1280 x 900) without scrolling.
FIRST_SCREEN = ("What it cannot test",)
FIRST_SCREEN_PX = 900


# -- static check -----------------------------------------------------------------------

class _PageParser(html.parser.HTMLParser):
    """Collects the ids of a page and every reference it makes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str, str, bool, int]] = []  # (tag, attribute, url, loaded, line)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("name"):
            self.ids.add(a["name"])
        line = self.getpos()[0]
        if tag == "meta" and a.get("http-equiv", "").lower() == "refresh":
            # <meta http-equiv="refresh" content="0; url=book/intro.html">: a redirect is a link.
            _, _, target = a.get("content", "").partition("=")
            if target.strip():
                self.refs.append(("a", "href", target.strip().strip("'\""), False, line))
        for attr in ("src", "srcset", "href", "poster", "data"):
            if attr not in a or not a[attr].strip():
                continue
            if tag == "link":
                rels = set(a.get("rel", "").lower().split())
                loaded = bool(rels & LOADED_LINK_RELS)
            else:
                loaded = (tag, attr) in LOADED
            urls = [part.strip().split()[0] for part in a[attr].split(",") if part.strip()] if attr == "srcset" else [a[attr].strip()]
            for url in urls:
                self.refs.append((tag, attr, url, loaded, line))

    handle_startendtag = handle_starttag


def html_pages(html_dir: str | os.PathLike) -> list[Path]:
    """Every ``.html`` page of the build (not the theme's assets), sorted."""
    root = Path(html_dir)
    pages = []
    for path in sorted(root.rglob("*.html")):
        rel = path.relative_to(root)
        if rel.parts[0] in SKIP_DIRS:
            continue
        pages.append(path)
    return pages


def _parse(path: Path) -> _PageParser:
    parser = _PageParser()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    parser.close()
    return parser


def static_problems(html_dir: str | os.PathLike) -> list[str]:
    """Broken relative references, missing anchors and remote resources in every page."""
    root = Path(html_dir).resolve()
    if not root.is_dir():
        return [f"{html_dir}: no such folder: build the book first (jupyter-book build .)"]
    pages = html_pages(root)
    if not pages:
        return [f"{html_dir}: holds no HTML page: build the book first (jupyter-book build .)"]
    parsed: dict[Path, _PageParser] = {}

    def ids_of(path: Path) -> set[str]:
        if path not in parsed:
            parsed[path] = _parse(path)
        return parsed[path].ids

    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    for page in pages:
        rel_page = page.relative_to(root).as_posix()
        info = parsed.get(page) or parsed.setdefault(page, _parse(page))
        for tag, attr, url, loaded, line in info.refs:
            if (rel_page, url) in seen:
                continue
            seen.add((rel_page, url))
            where = f"{rel_page}:{line}: <{tag} {attr}={url!r}>"
            parts = urlsplit(url)
            scheme = parts.scheme.lower()
            if scheme in IGNORED_SCHEMES:
                continue
            if scheme == "file":
                problems.append(f"{where} points at a file on the build machine; use a relative path")
                continue
            if scheme or url.startswith("//"):
                if loaded:
                    problems.append(f"{where} loads a resource from another host, so the page is broken "
                                    f"offline; ship the file inside the book")
                continue
            path = unquote(parts.path)
            if path:
                base = root if path.startswith("/") else page.parent
                target = (base / path.lstrip("/")).resolve()
            else:
                target = page
            if target.is_dir():
                target = target / "index.html"
            kind = "image" if tag == "img" else ("link" if tag == "a" else f"{tag} {attr}")
            try:
                target.relative_to(root)
            except ValueError:
                problems.append(f"{where}: broken {kind}: it points outside the book ({target})")
                continue
            if not target.is_file():
                problems.append(f"{where}: broken {kind}: {target.relative_to(root).as_posix()} does not exist")
                continue
            fragment = unquote(parts.fragment)
            if tag == "a" and fragment and target.suffix == ".html" and fragment not in ids_of(target):
                problems.append(f"{where}: broken link: {target.relative_to(root).as_posix()} has no "
                                f"element with id {fragment!r}")
    return problems


# -- browser check ----------------------------------------------------------------------

def find_chromium(chromium: str | None = None) -> str | None:
    """The Chromium executable: the argument, $SOUNDCLR_CHROMIUM, or chromium on PATH."""
    for candidate in (chromium, os.environ.get("SOUNDCLR_CHROMIUM")):
        if candidate:
            return candidate if (Path(candidate).is_file() or shutil.which(candidate)) else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


_PROBE_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>bookcheck probe</title></head>
<body>
<script>
const PAGES = __PAGES__;
const LOAD_MS = __LOAD_MS__, SETTLE_MS = __SETTLE_MS__;
const FIRST_SCREEN = __FIRST_SCREEN__, FIRST_SCREEN_PX = __FIRST_SCREEN_PX__;
const sleep = ms => new Promise(r => setTimeout(r, ms));
function within(promise, ms) { return Promise.race([promise.then(() => true), sleep(ms).then(() => false)]); }

async function probe(url) {
  // A fresh frame per page: a redirect or timer left by the previous page cannot reach this one.
  const frame = document.createElement("iframe");
  frame.style.cssText = "width:1280px;height:1600px;border:0";
  const loaded = new Promise(r => { frame.onload = r; });
  frame.src = url;  // before insertion: an inserted frame without src first "loads" about:blank
  document.body.appendChild(frame);
  const result = {page: url, loaded: await within(loaded, LOAD_MS), broken_images: [], untypeset_math: 0,
                  math: 0, mathjax: false, images: 0, title: "", shrunk_images: []};
  try { return await inspect(frame, result); }
  finally { frame.remove(); }
}

async function inspect(frame, result) {
  let doc, win;
  try { doc = frame.contentDocument; win = frame.contentWindow; } catch (e) { result.error = String(e); return result; }
  if (!doc) { result.error = "no document"; return result; }
  result.title = doc.title;
  if (win.location.pathname !== result.page) { result.error = "the frame shows " + win.location.pathname; return result; }
  // MathJax typesets after the load event; wait for its own promise.
  if (win.MathJax && win.MathJax.startup && win.MathJax.startup.promise) {
    result.mathjax = await within(win.MathJax.startup.promise, SETTLE_MS);
  }
  const images = Array.from(doc.images);
  for (const img of images) { if (img.loading === "lazy") img.loading = "eager"; }
  await within(Promise.all(images.map(img => (img.complete ? Promise.resolve() : new Promise(r => {
    img.addEventListener("load", r); img.addEventListener("error", r); })))), SETTLE_MS);
  result.images = images.length;
  for (const img of images) {
    if (!img.complete || img.naturalWidth === 0) {
      result.broken_images.push(img.getAttribute("src") || img.currentSrc || "(no src)");
    } else if (img.closest("article") && img.naturalWidth > 1.03 * img.getBoundingClientRect().width) {
      // wider than the text column: the browser scales it down, and its fonts with it
      result.shrunk_images.push([img.getAttribute("src") || "(no src)", img.naturalWidth,
                                 Math.round(img.getBoundingClientRect().width)]);
    }
  }
  // tables: wider than the text column (the numbers scroll out of sight), or a column with no value at all
  result.wide_tables = []; result.empty_columns = [];
  const article = doc.querySelector("article");
  const right = article ? article.getBoundingClientRect().right : Infinity;
  for (const table of (article ? Array.from(article.querySelectorAll("table:not(.indextable)")) : [])) {
    const label = (table.querySelector("th, td") ? table.innerText : "").trim().split(String.fromCharCode(10)).find(t => t.trim()) || "(a table)";
    const box = table.getBoundingClientRect();
    if (box.width > 0 && box.right > right + 2) result.wide_tables.push([label.slice(0, 60), Math.round(box.right - right)]);
    const rows = Array.from(table.querySelectorAll("tbody tr"));
    const heads = Array.from(table.querySelectorAll("thead th"));
    if (rows.length) {
      const cells = rows.map(tr => Array.from(tr.querySelectorAll("td")));
      const n = Math.max(...cells.map(c => c.length));
      for (let j = 0; j < n; j++) {
        if (cells.every(c => !c[j] || !c[j].textContent.trim())) {
          const head = heads.length >= n ? heads[heads.length - n + j].textContent.trim() : "column " + (j + 1);
          result.empty_columns.push([label.slice(0, 60), head]);
        }
      }
    }
  }
  // statements a reader must see without scrolling (the Claims page's scope): their bottom within 900 px
  result.below_first_screen = [];
  // the book's own pages only (not the highlighted source under _modules/, which quotes the phrase in code)
  const walker = doc.createTreeWalker(result.page.startsWith("/book/") ? (article || doc.body) : doc.createElement("div"),
                                      NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (const phrase of FIRST_SCREEN) {
      const at = node.textContent.indexOf(phrase);
      if (at < 0) continue;
      const range = doc.createRange();
      range.setStart(node, at); range.setEnd(node, at + phrase.length);
      const bottom = range.getBoundingClientRect().bottom;
      if (bottom > FIRST_SCREEN_PX) result.below_first_screen.push([phrase, Math.round(bottom)]);
    }
  }
  const math = Array.from(doc.querySelectorAll("span.math, div.math"));
  result.math = math.length;
  result.untypeset_math = math.filter(el => !el.querySelector("mjx-container")).length;
  return result;
}

(async () => {
  const results = [];
  for (const url of PAGES) {
    try { results.push(await probe(url)); }
    catch (e) { results.push({page: url, error: String(e)}); }
  }
  await fetch("__REPORT__", {method: "POST", headers: {"Content-Type": "application/json"},
                             body: JSON.stringify(results)});
  document.title = "bookcheck done";
})();
</script>
</body></html>
"""


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the book; answers the probe page; collects the report and failed requests."""

    state: dict  # set per server: {"probe": bytes, "report": list|None, "done": Event, "errors": list}

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if urlsplit(self.path).path == PROBE_PATH:
            body = self.state["probe"]
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def do_POST(self) -> None:  # noqa: N802
        if urlsplit(self.path).path != REPORT_PATH:
            self.send_error(404)
            return
        length = int(self.headers.get("Content-Length", "0"))
        try:
            self.state["report"] = json.loads(self.rfile.read(length).decode("utf-8"))
        except ValueError as err:
            self.state["report"] = [{"page": "(report)", "error": f"unreadable report: {err}"}]
        self.send_response(204)
        self.end_headers()
        self.state["done"].set()

    def send_response(self, code: int, message: str | None = None) -> None:
        if code >= 400 and urlsplit(self.path).path != "/favicon.ico":
            self.state["errors"].append((code, self.path, self.headers.get("Referer", "")))
        super().send_response(code, message)

    def log_message(self, format: str, *args) -> None:  # keep test output clean
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # The browser drops connections when the probe moves on (a frame is removed while
        # its resources load); that is not an error of the book.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Server:
    """A loopback HTTP server for the book, in a background thread."""

    def __init__(self, html_dir: Path, probe: bytes = b""):
        state = {"probe": probe, "report": None, "done": threading.Event(), "errors": []}
        handler = type("Handler", (_Handler,), {"state": state})
        self.state = state
        self.httpd = _QuietServer(("127.0.0.1", 0), partial(handler, directory=str(html_dir)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "_Server":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _chromium_command(chromium: str, profile: str) -> list[str]:
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
            # An offline reader: no host name resolves except the loopback server.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--user-data-dir={profile}", "--window-size=1280,1600"]


def _stop(proc: subprocess.Popen) -> None:
    """End the browser we started: its whole process group (renderers included)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


@dataclass
class BrowserReport:
    """What headless Chromium saw: one dict per page, and the requests that failed.

    Each page dict has ``page``, ``loaded``, ``title``, ``images`` (count),
    ``broken_images`` (their src), ``shrunk_images`` (src, natural and shown width of the
    figures wider than the text column), ``math`` (count of formulas),
    ``untypeset_math`` and ``mathjax`` (whether MathJax finished), or ``error``.
    ``http_errors`` holds ``(status, path, referring page)`` for every request
    the server answered with an error. ``failure`` says why there is no report.
    """
    pages: list[dict] = field(default_factory=list)
    http_errors: list[tuple[int, str, str]] = field(default_factory=list)
    failure: str | None = None


def open_in_browser(html_dir: str | os.PathLike, *, chromium: str | None = None,
                    pages: list[str] | None = None, page_timeout: float = 20.0,
                    settle_timeout: float = 10.0) -> BrowserReport:
    """Open every page (or ``pages``, relative to ``html_dir``) in headless Chromium."""
    root = Path(html_dir).resolve()
    exe = find_chromium(chromium)
    if exe is None:
        return BrowserReport(failure=f"cannot run the browser check: Chromium was not found (looked for "
                                     f"{', '.join(CHROMIUM_NAMES)} and $SOUNDCLR_CHROMIUM); install it with "
                                     f"`apt-get install -y chromium`")
    if pages is None:
        pages = [p.relative_to(root).as_posix() for p in html_pages(root)]
    if not pages:
        return BrowserReport(failure=f"{html_dir}: holds no HTML page: build the book first (jupyter-book build .)")
    probe = (_PROBE_HTML.replace("__PAGES__", json.dumps(["/" + p.lstrip("/") for p in pages]))
             .replace("__LOAD_MS__", str(int(page_timeout * 1000)))
             .replace("__SETTLE_MS__", str(int(settle_timeout * 1000)))
             .replace("__FIRST_SCREEN__", json.dumps(list(FIRST_SCREEN)))
             .replace("__FIRST_SCREEN_PX__", str(FIRST_SCREEN_PX))
             .replace("__REPORT__", REPORT_PATH)).encode("utf-8")
    budget = 30.0 + len(pages) * (page_timeout + 2 * settle_timeout)
    with _Server(root, probe) as server, tempfile.TemporaryDirectory(prefix="bookcheck-chromium-") as profile:
        cmd = _chromium_command(exe, profile) + [server.url + PROBE_PATH]
        with open(Path(profile) / "chromium.log", "w+b") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
            try:
                deadline = time.monotonic() + budget
                while not server.state["done"].wait(0.2):
                    if proc.poll() is not None or time.monotonic() > deadline:
                        break
            finally:
                exited_early = proc.poll()
                _stop(proc)
                log.seek(0)
                chromium_log = log.read().decode("utf-8", "replace")
        report = server.state["report"]
        errors = list(server.state["errors"])
    if report is None:
        why = f"Chromium exited with code {exited_early}" if exited_early is not None else f"no report within {budget:.0f} s"
        tail = "\n".join(chromium_log.strip().splitlines()[-15:])
        return BrowserReport(http_errors=errors,
                             failure=f"the browser check did not finish ({why}); command: {' '.join(cmd)}\n{tail}")
    return BrowserReport(pages=report, http_errors=errors)


def browser_problems(html_dir: str | os.PathLike, *, chromium: str | None = None,
                     pages: list[str] | None = None, page_timeout: float = 20.0,
                     settle_timeout: float = 10.0) -> list[str]:
    """Problems seen in headless Chromium: images that did not load or decode, formulas
    MathJax did not typeset, pages that did not load, and failed requests."""
    report = open_in_browser(html_dir, chromium=chromium, pages=pages, page_timeout=page_timeout,
                             settle_timeout=settle_timeout)
    return report_problems(report, page_timeout=page_timeout)


def report_problems(report: BrowserReport, *, page_timeout: float = 20.0) -> list[str]:
    """A :class:`BrowserReport` in words: one line per problem."""
    problems = [report.failure] if report.failure else []
    for r in report.pages:
        page = r.get("page", "?").lstrip("/")
        if r.get("error"):
            problems.append(f"{page}: the browser could not inspect the page: {r['error']}")
            continue
        if not r.get("loaded"):
            problems.append(f"{page}: did not finish loading in the browser within {page_timeout:g} s")
        for src in r.get("broken_images", []):
            problems.append(f"{page}: broken image in the browser: {src!r} did not load or decode")
        for src, natural, shown in r.get("shrunk_images", []):
            problems.append(f"{page}: figure {src!r} is {natural} px wide but the text column shows it at {shown} px "
                            "(its fonts shrink): make the figure narrower")
        for phrase, bottom in r.get("below_first_screen", []):
            problems.append(f"{page}: {phrase!r} ends {bottom} px down the page, below the first screen "
                            f"({FIRST_SCREEN_PX} px at 1280 px wide): move it up")
        for label, overflow in r.get("wide_tables", []):
            problems.append(f"{page}: the table starting {label!r} runs {overflow} px past the text column: "
                            "shorten its labels or let them wrap")
        for label, head in r.get("empty_columns", []):
            problems.append(f"{page}: the table starting {label!r} has an empty column {head!r}")
        if r.get("untypeset_math"):
            state = "MathJax loaded but did not finish" if r.get("mathjax") else "MathJax did not load"
            problems.append(f"{page}: {r['untypeset_math']} of {r['math']} formulas were not typeset ({state}); "
                            f"formulas must render offline")
    for code, path, referer in report.http_errors:
        source = urlsplit(referer).path.lstrip("/") if referer else "?"
        if source == PROBE_PATH.lstrip("/"):
            source = "(a page opened by the check)"
        problems.append(f"{source}: the browser requested {path} and got HTTP {code}")
    return problems


def check_built_book(html_dir: str | os.PathLike, *, browser: bool = True, chromium: str | None = None,
                     pages: list[str] | None = None) -> list[str]:
    """All problems found in a built book (``[]`` when there are none).

    Args:
        html_dir: the build's HTML folder, e.g. ``_build/html``.
        browser: also open the pages in headless Chromium (needs ``chromium``).
        chromium: the Chromium executable (default: $SOUNDCLR_CHROMIUM or ``chromium``).
        pages: pages to open in the browser, relative to ``html_dir`` (default: all).
    """
    problems = static_problems(html_dir)
    if browser and Path(html_dir).is_dir():
        problems += browser_problems(html_dir, chromium=chromium, pages=pages)
    return problems


def screenshot(html_dir: str | os.PathLike, page: str, out_png: str | os.PathLike, *,
               chromium: str | None = None, width: int = 1280, height: int = 1600) -> Path:
    """Save a PNG of one page of the book, served over loopback like the browser check."""
    exe = find_chromium(chromium)
    if exe is None:
        raise FileNotFoundError("Chromium was not found: install it with `apt-get install -y chromium`")
    out = Path(out_png).resolve()
    with _Server(Path(html_dir).resolve()) as server, tempfile.TemporaryDirectory(prefix="bookcheck-chromium-") as profile:
        cmd = _chromium_command(exe, profile) + [
            f"--window-size={width},{height}", "--run-all-compositor-stages-before-draw",
            "--virtual-time-budget=10000", f"--screenshot={out}", f"{server.url}/{page.lstrip('/')}"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pass
        finally:
            _stop(proc)
    if not out.is_file():
        raise RuntimeError(f"Chromium wrote no screenshot to {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Check a built Jupyter Book for broken images and links.")
    parser.add_argument("html_dir", nargs="?", default="_build/html")
    parser.add_argument("--no-browser", action="store_true", help="static check only")
    parser.add_argument("--screenshot", nargs=2, metavar=("PAGE", "PNG"), help="save a screenshot of PAGE and exit")
    args = parser.parse_args(argv)
    if args.screenshot:
        print(screenshot(args.html_dir, *args.screenshot))
        return 0
    problems = check_built_book(args.html_dir, browser=not args.no_browser)
    for p in problems:
        print(p)
    print(f"{len(problems)} problem(s) in {args.html_dir}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
