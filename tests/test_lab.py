"""Jupyter Lab as a student meets it (issue 17, item 5), driven in headless Chromium by Playwright.

The test lays out a copy of the project in a temporary folder (pyproject.toml, the book's hand-written
pages in book/, and notebooks/ with every notebook; the only edits are the parameters ``size = "tiny"`` and
``device = "cpu"``), links its ``data`` to the session's synthetic dataset, trains the tiny plan into its
``results`` (about 20 s), and starts ``jupyter lab`` on it at the project root, opening notebooks/ (a free
localhost port, a token, a temporary Jupyter config, runtime and IPython folder: the user's settings are not
touched), so that the notebooks' links to the book's pages (``../book/tuning.md``) open. The notebooks keep
their default ``results = "results"`` and ``data_root = "data"``, so the kernel, which Lab starts in
notebooks/, must find the runs through the project root. In Lab it runs all of augmentations.ipynb, moves a
slider of the explorer and waits for the figure to change, then runs all of claims.ipynb and checks it
finishes from the finished runs within a minute, trains nothing, links its evidence to notebooks Lab opens,
and links the book's pages (its prose's and the library's) to files Lab opens.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import bookcheck
import pytest

ROOT = Path(__file__).resolve().parents[1]
NB = ".jp-NotebookPanel:not(.lm-mod-hidden)"      # the notebook in view (Lab keeps other tabs in the page, hidden)
SETUP = "tests/setup_browser.py installs it; `make test` runs it"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _student_copy(proj: Path, data: Path) -> None:
    (proj / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", proj)
    for path in (ROOT / "notebooks").glob("*.ipynb"):
        nb = json.loads(path.read_text(encoding="utf-8"))
        cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
        src = "".join(cell["source"])
        assert 'results = "results"' in src and 'data_root = "data"' in src and "size = None" in src
        src = src.replace("size = None", 'size = "tiny"').replace('device = "auto"', 'device = "cpu"')
        cell["source"] = src.splitlines(keepends=True)
        (proj / "notebooks" / path.name).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (proj / "data").symlink_to(data, target_is_directory=True)
    (proj / "book").mkdir()
    for page in (ROOT / "book").glob("*.md"):           # what the notebooks' links to the book open
        shutil.copy(page, proj / "book" / page.name)


def _start_lab(proj: Path, home: Path) -> tuple[subprocess.Popen, str, str]:
    port, token = _free_port(), "soundclr-lab-test"
    cfg = home / "config"
    settings = cfg / "lab" / "user-settings" / "@jupyterlab"
    # every cell in the page (not only those in view), and no news or update checks (offline)
    (settings / "notebook-extension").mkdir(parents=True)
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    (settings / "apputils-extension").mkdir(parents=True)
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}')
    (settings / "docmanager-extension").mkdir(parents=True)    # no "Select Kernel" dialog: the notebook's own kernel
    (settings / "docmanager-extension" / "plugin.jupyterlab-settings").write_text('{"autoStartDefaultKernel": true}')
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(cfg), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "IPYTHONDIR": str(home / "ipython"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={proj}",
           "--ServerApp.allow_root=True", "--LabApp.news_url=", "--ServerApp.log_level=WARN"]
    log = open(home / "lab.log", "w")
    lab = subprocess.Popen(cmd, cwd=proj / "notebooks", env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
            return lab, base, token
        except OSError:
            if lab.poll() is not None:
                break
            time.sleep(0.5)
    lab.terminate()
    pytest.fail("jupyter lab did not start:\n" + (home / "lab.log").read_text()[-3000:])


def _run_all(page, timeout_s: float) -> float:
    """Run > Run All Cells, then wait until every code cell has its execution count; the seconds it took."""
    page.wait_for_selector(f"{NB} .jp-CodeCell", timeout=60_000)
    select = page.locator('.jp-Dialog button.jp-mod-accept')   # "Select Kernel" (it comes at times despite the setting)
    status = page.locator(".jp-StatusBar-Widget")
    t0, settled = time.time(), 0
    while settled < 3:                     # the kernel connected and idle, no dialog up, for 1.5 s
        if time.time() - t0 > 90:
            pytest.fail(f"the kernel did not start in Lab: status bar {status.all_inner_texts()}")
        if select.count():
            select.first.click()
            settled = 0
        elif "| Idle" in " ".join(status.all_inner_texts()):
            settled += 1
        else:
            settled = 0
        time.sleep(0.5)
    t0 = time.time()
    page.locator('.lm-MenuBar-itemLabel:text-is("Run")').first.click()
    page.locator('.lm-Menu-itemLabel:text-is("Run All Cells")').first.click()
    prompts: list[str] = []
    while time.time() - t0 < timeout_s:
        if select.count():
            select.first.click()           # the notebook's own kernel, python3; the run goes on
        prompts = page.evaluate("() => [...document.querySelectorAll('" + NB + " .jp-CodeCell .jp-InputArea-prompt')]"
                                ".map(e => e.textContent)")
        if prompts and all(re.search(r"\[\d+\]", p) for p in prompts):
            break
        time.sleep(0.5)
    else:
        shot = Path(os.environ.get("PYTEST_LAB_SHOTS", "/tmp")) / f"lab-{int(time.time())}.png"
        page.screenshot(path=str(shot), full_page=True)
        pytest.fail(f"Run All Cells did not finish in {timeout_s} s: prompts {prompts}; screenshot {shot}")
    return time.time() - t0


def _problems_on_the_page(page) -> list[str]:
    problems = []
    errors = page.locator(f'{NB} .jp-RenderedText[data-mime-type="application/vnd.jupyter.error"]')
    if errors.count():
        problems.append("an error output: " + errors.first.inner_text()[-1500:])
    outputs = " ".join(page.locator(f"{NB} .jp-OutputArea-output").all_inner_texts())
    if "<function" in outputs:
        problems.append("a stray function repr in the outputs")
    if "training them now" in outputs:
        problems.append("the notebook trained runs: " + outputs[outputs.index("training them now") - 200:][:400])
    prose = " ".join(page.locator(f"{NB} .jp-MarkdownCell .jp-RenderedMarkdown").all_inner_texts())
    if "{py:" in prose or "{py:" in outputs:
        problems.append("a raw MyST role")
    return problems


@pytest.mark.slow
def test_jupyter_lab_runs_the_notebooks_from_the_books_runs(tmp_path, synthetic_root):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is missing: pip install -c constraints.txt -e '.[test]'")
    chromium = bookcheck.find_chromium()
    if chromium is None:
        pytest.fail(f"Chromium is not installed ({SETUP})")
    from soundclr.book.reproduce import train_plan
    t_start = time.time()
    proj = tmp_path / "proj"
    _student_copy(proj, synthetic_root)
    runs = train_plan("synthetic", "quick", size="tiny", device="cpu", results=str(proj / "results"),
                      data_root=str(proj / "data"), workers=2)
    trained = {p: p.stat().st_mtime for p in (proj / "results").rglob("summary.json")}
    assert len(trained) >= runs
    lab, base, token = _start_lab(proj, tmp_path / "jupyter")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.goto(f"{base}/lab/tree/notebooks/augmentations.ipynb?token={token}")
            seconds = _run_all(page, 240)
            print(f"augmentations.ipynb: run all in {seconds:.1f} s")
            assert _problems_on_the_page(page) == []

            explorer = page.locator(f"{NB} .widget-interact").first
            labels = explorer.locator(".widget-label")
            for k in range(labels.count()):      # the whole label shows (the default width cut it to "freq_mas...")
                label = labels.nth(k)
                assert label.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), label.inner_text()
            assert "frequency masks f" in explorer.inner_text()
            image = explorer.locator("img").first
            before = image.get_attribute("src")
            readout = explorer.locator(".widget-hslider", has_text="random draw").locator(".widget-readout")
            readout.click()
            page.keyboard.press("Control+A")
            page.keyboard.type("7")
            page.keyboard.press("Enter")
            t0 = time.time()
            page.wait_for_function("([el, src]) => { const i = el.querySelector('img'); return i && i.src !== src; }",
                                   arg=[explorer.element_handle(), before], timeout=60_000)
            print(f"explorer: the figure changed {time.time() - t0:.1f} s after the slider moved")
            assert "draw 7" not in before and _problems_on_the_page(page) == []

            page.goto(f"{base}/lab/tree/notebooks/claims.ipynb?reset&token={token}")      # only this notebook open
            seconds = _run_all(page, 120)
            print(f"claims.ipynb: run all in {seconds:.1f} s")
            assert seconds < 60, f"claims.ipynb took {seconds:.0f} s in Lab"
            assert _problems_on_the_page(page) == []
            ledger = page.locator(f"{NB} .claims-ledger")
            assert ledger.count() == 1
            link = ledger.locator("a", has_text="Results").first
            link.click()                          # Lab opens the notebook the evidence link names
            page.wait_for_selector('.lm-TabBar-tabLabel:text-is("results.ipynb")', timeout=30_000)
            # the book's pages: linked by the notebook's prose, and by the library's (the Settings line)
            for text, tab in (("how the quick preset was chosen", "tuning.md"), ("how to read these pages", "results.md")):
                page.locator('.lm-TabBar-tabLabel:text-is("claims.ipynb")').first.click()
                page.locator(f"{NB} .jp-RenderedMarkdown a", has_text=text).first.click()
                page.wait_for_selector(f'.lm-TabBar-tabLabel:text-is("{tab}")', timeout=30_000)
            browser.close()
    finally:
        lab.terminate()
        try:
            lab.wait(20)
        except subprocess.TimeoutExpired:
            lab.kill()
    after = {p: p.stat().st_mtime for p in (proj / "results").rglob("summary.json")}
    # nothing trained again (a run finished in another experiment may be copied into place: Plan.finished)
    assert {p: after[p] for p in trained} == trained, "Lab trained runs the book had already trained"
    assert not (proj / "notebooks" / "results").exists() and not (proj / "notebooks" / "data").exists()
    print(f"Lab test: {time.time() - t_start:.0f} s in all")
