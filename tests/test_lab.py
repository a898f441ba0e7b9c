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
import signal
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


def _browser():
    """Playwright's entry point and the Chromium it drives; a clear failure naming the setup when either is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is missing: pip install -c constraints.txt -e '.[test]'")
    chromium = bookcheck.find_chromium()
    if chromium is None:
        pytest.fail(f"Chromium is not installed ({SETUP})")
    return sync_playwright, chromium


def _stop(lab: subprocess.Popen) -> None:
    lab.terminate()
    try:
        lab.wait(20)
    except subprocess.TimeoutExpired:
        lab.kill()


def _wait_idle(page) -> None:
    """Wait until the notebook's kernel is connected and idle, with no dialog up, for 1.5 s (a "Select Kernel"
    or "Kernel Restarting" dialog that comes is accepted: the notebook's own kernel, python3)."""
    page.wait_for_selector(f"{NB} .jp-CodeCell", timeout=60_000)
    select = page.locator('.jp-Dialog button.jp-mod-accept')
    status = page.locator(".jp-StatusBar-Widget")
    t0, settled = time.time(), 0
    while settled < 3:
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


def _menu(page, menu: str, item: str) -> None:
    page.locator(f'.lm-MenuBar-itemLabel:text-is("{menu}")').first.click()
    page.locator(f'.lm-Menu-itemLabel:text-is("{item}")').first.click()


def _wait_numbered(page, t0: float, timeout_s: float) -> float:
    """Wait until every code cell has its execution count; the seconds since ``t0``."""
    select = page.locator('.jp-Dialog button.jp-mod-accept')
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


def _run_all(page, timeout_s: float) -> float:
    """Run > Run All Cells, then wait until every code cell has its execution count; the seconds it took."""
    _wait_idle(page)
    t0 = time.time()
    _menu(page, "Run", "Run All Cells")
    return _wait_numbered(page, t0, timeout_s)


def _problems_on_the_page(page, trains: bool = False) -> list[str]:
    problems = []
    errors = page.locator(f'{NB} .jp-RenderedText[data-mime-type="application/vnd.jupyter.error"]')
    if errors.count():
        problems.append("an error output: " + errors.first.inner_text()[-1500:])
    outputs = " ".join(page.locator(f"{NB} .jp-OutputArea-output").all_inner_texts())
    if "<function" in outputs:
        problems.append("a stray function repr in the outputs")
    if "training them now" in outputs and not trains:
        problems.append("the notebook trained runs: " + outputs[outputs.index("training them now") - 200:][:400])
    prose = " ".join(page.locator(f"{NB} .jp-MarkdownCell .jp-RenderedMarkdown").all_inner_texts())
    if "{py:" in prose or "{py:" in outputs:
        problems.append("a raw MyST role")
    return problems


@pytest.mark.slow
def test_jupyter_lab_runs_the_notebooks_from_the_books_runs(tmp_path, synthetic_root):
    sync_playwright, chromium = _browser()
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
        _stop(lab)
    after = {p: p.stat().st_mtime for p in (proj / "results").rglob("summary.json")}
    # nothing trained again (a run finished in another experiment may be copied into place: Plan.finished)
    assert {p: after[p] for p in trained} == trained, "Lab trained runs the book had already trained"
    assert not (proj / "notebooks" / "results").exists() and not (proj / "notebooks" / "data").exists()
    print(f"Lab test: {time.time() - t_start:.0f} s in all")


def _kernels_of(parent: int) -> list[int]:
    """The pids of the ipykernel processes ``parent`` (the Lab server) started."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmd = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue                       # a process that ended while we looked
        if ppid == parent and b"ipykernel" in cmd:
            pids.append(int(stat.parent.name))
    return pids


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_a_notebook_whose_kernel_died_mid_training_resumes_on_rerun(tmp_path, synthetic_root):
    """Issue 25, item 3: training.ipynb run in Lab, its kernel killed with SIGKILL (what an out-of-memory kill
    does) once its first run has a checkpoint; Lab restarts the kernel, the student clears the outputs and runs
    all cells again. The rerun takes the dead kernel's run over at once (same host, process gone), resumes it
    from its checkpoint (the epochs before the kill are not trained again: their metrics lines, wall-clock
    seconds included, are kept), and every run ends bit-identical to the same plan trained once without a kill,
    beside it in a plain process with the same thread count."""
    sync_playwright, chromium = _browser()
    proj = tmp_path / "proj"
    _student_copy(proj, synthetic_root)
    path = proj / "notebooks" / "training.ipynb"
    nb = json.loads(path.read_text(encoding="utf-8"))
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    src = "".join(cell["source"])
    assert "epochs = None" in src
    cell["source"] = src.replace("epochs = None", "epochs = 6").splitlines(keepends=True)   # time to kill it mid-run
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

    # the same plan trained once, uninterrupted, in a plain process (the kernel's thread count: OMP_NUM_THREADS=1)
    whole = tmp_path / "whole"
    once = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from soundclr.book.plan import make_plan; "
         "p = make_plan('synthetic', 'quick', size='tiny', device='cpu', epochs=6, results=sys.argv[1], data_root=sys.argv[2]); "
         "p.train_missing(p.main_runs(schemes=['hybrid']))", str(whole), str(synthetic_root)],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    lab, base, token = _start_lab(proj, tmp_path / "jupyter")
    results = proj / "results"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.goto(f"{base}/lab/tree/notebooks/training.ipynb?reset&token={token}")
            _wait_idle(page)
            _menu(page, "Run", "Run All Cells")
            deadline, running = time.time() + 300, []
            while time.time() < deadline and not running:      # wait on state: a run with a checkpoint, unfinished
                running = [c.parent for c in results.rglob("checkpoint.pt") if not (c.parent / "summary.json").exists()]
                time.sleep(0.05)
            assert running, "no run of the notebook wrote a checkpoint within 300 s"
            kernels = _kernels_of(lab.pid)
            assert len(kernels) == 1, kernels
            os.kill(kernels[0], signal.SIGKILL)
            victim = running[0]
            before = _metrics(victim)                  # the epochs trained before the kill
            assert before and not (victim / "summary.json").exists()
            print(f"killed the kernel (pid {kernels[0]}) after {len(before)} epoch(s) of {victim.name}")

            t0 = time.time()
            while time.time() - t0 < 60 and (not _kernels_of(lab.pid) or _kernels_of(lab.pid) == kernels):
                time.sleep(0.2)                        # Lab's server restarts a dead kernel by itself
            assert _kernels_of(lab.pid) not in ([], kernels), "Lab did not restart the dead kernel"
            _wait_idle(page)                           # accepts the "Kernel Restarting" dialog
            _menu(page, "Edit", "Clear Outputs of All Cells")
            t0 = time.time()
            _menu(page, "Run", "Run All Cells")
            seconds = _wait_numbered(page, t0, 300)
            print(f"rerun after the kernel's death: run all in {seconds:.1f} s")
            assert _problems_on_the_page(page, trains=True) == []
            outputs = " ".join(page.locator(f"{NB} .jp-OutputArea-output").all_inner_texts())
            assert "training them now" in outputs and "held by another worker" not in outputs, outputs[:2000]
            browser.close()
    finally:
        _stop(lab)
    after = _metrics(victim)
    assert after[:len(before)] == before, "the rerun trained the epochs before the kill again instead of resuming"
    assert once.wait(timeout=600) == 0, once.stderr.read()[-2000:]

    def metrics(root: Path) -> dict:
        return {m.parent.relative_to(root).as_posix(): [{k: v for k, v in x.items() if k != "seconds"}
                                                       for x in _metrics(m.parent)]
                for m in sorted(root.rglob("metrics.jsonl"))}
    assert metrics(results) == metrics(whole) and len(metrics(whole)) >= 2
