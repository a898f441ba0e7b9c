"""End to end, with the smallest settings: every notebook through papermill, the book built
from them, every page and figure present, and no broken image or link in headless Chromium;
then nbval runs each notebook (parameterised with the same tiny settings) and checks every
cell executes.

The tiny book is built as a researcher builds one with a method of their own beside the paper's
(``soundclr reproduce --plugin examples/label_smoothing.py --schemes label_smoothing``): the example
plugin's scheme gets its training page, its rows and bars, and its claim LS1 joins the ledger; every
check of the book then covers the fourth scheme too. ``make book`` keeps the paper's three."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = {"size": "tiny", "preset": "quick", "dataset": "synthetic", "device": "cpu"}
EXAMPLE = ROOT / "examples" / "label_smoothing.py"
OWN = {"plugins": [str(EXAMPLE)], "schemes": ["label_smoothing"]}
TRAIN_ONLY = [sys.executable, "-m", "soundclr", "reproduce", "--dataset", "synthetic", "--preset", "quick", "--size", "tiny",
              "--device", "cpu", "--workers", "1", "--train-only"]


@pytest.fixture(scope="module")
def tiny_book(tmp_path_factory, synthetic_root):
    from soundclr.book.reproduce import build_book, run_notebooks, train_plan
    site = tmp_path_factory.mktemp("site")
    for name in ("_config.yml", "_toc.yml", "references.bib"):
        shutil.copy(ROOT / name, site / name)
    shutil.copytree(ROOT / "book", site / "book", ignore=shutil.ignore_patterns("generated", "__pycache__"))
    shutil.copytree(ROOT / "soundclr", site / "soundclr", ignore=shutil.ignore_patterns("__pycache__"))  # the method page includes its code
    shutil.copytree(ROOT / "examples", site / "examples")         # and the chapter on your own method its example
    results = site / "results"
    generated = site / "book" / "generated"
    # as `soundclr reproduce` does: every run first, then the notebooks (which then only read the store)
    from soundclr.schemes import load_plugins
    load_plugins(OWN["plugins"])
    train_plan("synthetic", "quick", size="tiny", device="cpu", results=str(results), data_root=str(synthetic_root),
               workers=1, schemes=OWN["schemes"])
    run_notebooks("synthetic", "quick", size="tiny", device="cpu", results=str(results), data_root=str(synthetic_root),
                  out_dir=generated / "synthetic", **OWN)
    html = build_book(site)
    return site, html, results


@pytest.mark.slow
def test_tiny_book_has_every_page_table_and_figure(tiny_book):
    from test_book import real_book_problems
    site, html, _ = tiny_book
    problems = real_book_problems(html, site / "book" / "generated", convergence=False)   # 2-epoch runs: not converged
    assert problems == [], "\n".join(problems)


@pytest.mark.slow
def test_a_scheme_and_claim_of_your_own_appear_beside_the_papers(tiny_book):
    """The example plugin's scheme has a training page of its own, in the book's order after the paper's three; it
    is a row of Table III and of Fig. 4's numbers; its claim LS1 is a row of the ledger on the Claims page, tested
    with the same statistics as C1 (an interval, a power, the same schedule on both sides), and the Results page
    concludes on it."""
    import re

    from soundclr.analysis.ledger import ledger
    from soundclr.book.plan import make_plan
    site, html, results = tiny_book
    pages = html / "book" / "generated" / "synthetic"
    own = pages / "training-label_smoothing.html"
    assert own.is_file()
    training = own.read_text()
    assert "CE, label smoothing" in training and "smoothed by 0.1" in training
    page = (pages / "augmentations.html").read_text()
    nav = page[page.index("bd-docs-nav"):]
    nav = nav[:nav.index("</nav>")]                          # the book's navigation: its pages in reading order
    toc = re.findall(r'href="((?:training-[a-z_]+|results|ablation))\.html"', nav)
    assert list(dict.fromkeys(toc)) == ["training-ce", "training-supcon", "training-hybrid", "training-label_smoothing",
                                        "results", "ablation"]
    index = (pages / "results.html").read_text()
    text = re.sub(r"<[^>]+>", " ", index)
    assert text.count("CE, label smoothing") >= 3, "Table III, Fig. 4's numbers and the confused pairs"
    assert "LS1" in text and "label smoothing beats cross-entropy" in text
    claims = re.sub(r"<[^>]+>", " ", (pages / "claims.html").read_text())
    assert "LS1" in claims and "label smoothing beats cross-entropy" in claims

    plan = make_plan("synthetic", "quick", size="tiny", device="cpu", results=str(results),
                     data_root=str(site / ".." / "unused"), schemes=["label_smoothing"])
    row = ledger(plan, device="cpu").set_index("id").loc["LS1"]
    c1 = ledger(plan, device="cpu").set_index("id").loc["C1"]
    assert row.verdict in ("supported", "contradicted", "inconclusive") and row.same_schedule
    assert row.runs == c1.runs and row.n == c1.n and row.low_nb < row.effect < row.high_nb


@pytest.mark.slow
def test_a_rerun_skips_finished_training(tiny_book, synthetic_root, capsys):
    from soundclr.book.reproduce import run_notebooks
    site, _, results = tiny_book
    before = {p: p.stat().st_mtime for p in results.rglob("summary.json")}
    run_notebooks("synthetic", "quick", size="tiny", device="cpu", results=str(results), data_root=str(synthetic_root),
                  only=["training-hybrid"], out_dir=site / "rerun")
    after = {p: p.stat().st_mtime for p in results.rglob("summary.json")}
    assert before == after


@pytest.mark.slow
def test_a_failing_notebook_stops_with_the_cells_error(tmp_path, synthetic_root):
    from soundclr.book.reproduce import NotebookError, run_notebooks
    with pytest.raises(NotebookError, match=r"augmentations.*failed in cell .*DatasetError"):
        run_notebooks("esc50", "quick", size="tiny", device="cpu", results=str(tmp_path / "r"),
                      data_root=str(tmp_path / "no-data"), only=["augmentations"], out_dir=tmp_path / "out")
    assert (tmp_path / "out" / "augmentations.failed.ipynb").exists()
    assert not (tmp_path / "out" / "augmentations.ipynb").exists()


@pytest.mark.slow
def test_nbval_runs_each_notebook(tiny_book, synthetic_root, tmp_path):
    import papermill

    from soundclr.book.reproduce import NOTEBOOKS
    _, _, results = tiny_book  # the training runs are finished: nbval re-executes the analysis
    for name, source, extra in NOTEBOOKS:
        nb = papermill.iorw.load_notebook_node(str(ROOT / "notebooks" / f"{source}.ipynb"))
        params = {**TINY, "results": str(results), "data_root": str(synthetic_root), **extra}
        nb = papermill.parameterize.parameterize_notebook(nb, params)
        papermill.iorw.write_ipynb(nb, str(tmp_path / f"{name}.ipynb"))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                        "--rootdir", str(tmp_path), str(tmp_path)], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-2000:]
    import re
    code_cells = sum(1 for f in tmp_path.glob("*.ipynb") for c in papermill.iorw.load_notebook_node(str(f)).cells
                     if c.cell_type == "code")
    passed = int(re.search(r"(\d+) passed", r.stdout).group(1))
    assert passed == code_cells, r.stdout[-2000:]  # every code cell of every notebook ran


@pytest.mark.slow
def test_training_for_the_book_streams_progress_from_its_workers(tmp_path, synthetic_root, capfd):
    """`soundclr reproduce` trains the book's runs with worker processes before the notebooks; their
    lines reach the terminal (the pages show none), and a second call finds everything finished."""
    from soundclr.book.reproduce import train_plan
    n = train_plan("synthetic", "quick", size="tiny", device="cpu", results=str(tmp_path / "r"),
                   data_root=str(synthetic_root), workers=2)
    out = capfd.readouterr().out
    assert "[worker 1]" in out and "[worker 2]" in out, out[-2000:]
    assert out.count(": final ") == n, out[-2000:]          # one line per run, each trained once
    assert train_plan("synthetic", "quick", size="tiny", device="cpu", results=str(tmp_path / "r"),
                      data_root=str(synthetic_root), workers=2) == n
    assert f"{n} already finished" in capfd.readouterr().out


def test_version_and_python_dash_m():
    r = subprocess.run([sys.executable, "-m", "soundclr", "--version"], capture_output=True, text=True)
    import soundclr
    assert r.returncode == 0 and r.stdout.strip() == f"soundclr {soundclr.__version__}"
    r = subprocess.run([sys.executable, "-m", "soundclr", "train", "--no-such-flag"], capture_output=True, text=True)
    assert r.returncode == 2 and "unrecognized arguments" in r.stderr      # a usage error: argparse's 2


@pytest.mark.slow
def test_a_killed_book_build_resumes_to_the_same_ledger(synthetic_root, tmp_path):
    """`soundclr reproduce` killed with SIGKILL (its whole process group: the command and its training workers)
    once one run has finished and another has a checkpoint, then run again at once: it takes the dead workers'
    runs over, finishes the plan, and its ledger and every run's metrics equal those of the same command run
    once without a kill, beside it (same threads, so the same float sums)."""
    import json
    import os
    import signal
    import time

    from soundclr.analysis.ledger import ledger
    from soundclr.book.plan import make_plan
    results = tmp_path / "r"
    cmd = TRAIN_ONLY + ["--results", str(results), "--data-root", str(synthetic_root)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    whole = tmp_path / "whole"
    once = subprocess.Popen(TRAIN_ONLY + ["--results", str(whole), "--data-root", str(synthetic_root)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    victim = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and victim.poll() is None:
        done = list(results.rglob("summary.json"))
        running = [c for c in results.rglob("checkpoint.pt") if not (c.parent / "summary.json").exists()]
        if done and running:
            break
        time.sleep(0.05)
    assert victim.poll() is None, "the build finished before it could be killed"
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]

    def metrics(root: Path) -> dict:
        return {m.parent.relative_to(root).as_posix(): [{k: v for k, v in json.loads(x).items() if k != "seconds"}
                                                       for x in m.read_text().splitlines()]
                for m in sorted(root.rglob("metrics.jsonl"))}
    assert once.wait(timeout=900) == 0, once.stderr.read()[-2000:]
    assert metrics(results) == metrics(whole) and len(metrics(whole)) > 10
    columns = ["id", "verdict", "effect", "low", "high", "low_nb", "high_nb", "p"]
    plan = lambda r: make_plan("synthetic", "quick", size="tiny", device="cpu", results=str(r),  # noqa: E731
                               data_root=str(synthetic_root))
    killed, uninterrupted = ledger(plan(results), cache=False), ledger(plan(whole), cache=False)
    timed = killed.unit.str.contains("second")           # measured in wall-clock seconds (C8b): differs between any two builds
    assert killed[columns][~timed].equals(uninterrupted[columns][~timed]), (killed[columns], uninterrupted[columns])
    assert killed.verdict.equals(uninterrupted.verdict)
