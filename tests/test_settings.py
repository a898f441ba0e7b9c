"""Every setting through papermill and `soundclr reproduce --set` (issue 17, item 2), and the notebooks'
relative results and data folders taken from the project root wherever the kernel starts (item 5)."""
import json
import shutil
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_reproduce_set_with_an_unknown_key_is_a_usage_error_naming_the_valid_settings(tmp_path, capsys):
    from soundclr.cli import main
    t0 = time.time()
    rc = main(["reproduce", "--dataset", "synthetic", "--preset", "quick", "--set", "batch_size=16", "--set", "bogus=1",
               "--results", str(tmp_path / "r"), "--data-root", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "unknown setting 'bogus'" in err and "valid settings are" in err and "batch_size" in err, err
    assert time.time() - t0 < 10 and not (tmp_path / "r").exists() and not (tmp_path / "d").exists()   # before any work


@pytest.mark.parametrize("item, words", [
    ("batch_size=many", "setting batch_size='many' is not valid: expected int"),
    ("backbone", "expected KEY=VALUE"),
    ("dataset=esc50", "use --dataset"),
    ("data-root=x", "use --data-root"),
    ("seed=3", "set run by run"),
])
def test_reproduce_set_rejects_bad_values_and_settings_with_their_own_flag(tmp_path, capsys, item, words):
    from soundclr.cli import main
    rc = main(["reproduce", "--set", item, "--results", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and words in err, err
    assert not (tmp_path / "r").exists()


def test_run_notebooks_checks_its_settings_before_the_first_notebook(tmp_path):
    from soundclr.book.reproduce import run_notebooks
    from soundclr.config import ConfigError
    with pytest.raises(ConfigError, match="unknown setting 'bogus'.*valid settings are"):
        run_notebooks("synthetic", "quick", size="tiny", results=str(tmp_path / "r"), out_dir=tmp_path / "out",
                      settings={"bogus": 1})
    assert not (tmp_path / "out").exists()


def test_settings_reach_the_training_workers(tmp_path, synthetic_root, monkeypatch):
    """train_plan gives its --set settings (epochs apart: the plan's own parameter) to every worker, whose plan
    is then the one the notebooks read."""
    import soundclr.book.reproduce
    from soundclr.book.plan import make_plan
    from soundclr.book.reproduce import NotebookError, train_plan
    seen = []
    monkeypatch.setattr(soundclr.book.reproduce, "run_workers", lambda cmd, workers: seen.append(cmd))
    with pytest.raises(NotebookError, match="did not finish"):      # the stand-in workers train nothing
        train_plan("synthetic", "quick", size="tiny", device="cpu", results=str(tmp_path / "r"),
                   data_root=str(synthetic_root), workers=2, settings={"n-mels": "16", "epochs": "3"})
    args = json.loads(seen[0][-1])
    assert args["settings"] == {"n_mels": "16"} and args["epochs"] == 3
    plan = make_plan(args["dataset"], args["preset"], size=args["size"], device=args["device"], results=args["results"],
                     data_root=args["data_root"], epochs=args["epochs"], **args["settings"])
    assert plan.config.features.n_mels == 16 and plan.config.optim.epochs == 3


def test_a_notebook_takes_any_setting_through_papermill(tmp_path, synthetic_root):
    """One notebook on the tiny plan, with a setting no parameter of its own names: the page states it."""
    import nbformat

    from soundclr.book.reproduce import run_notebooks
    t0 = time.time()
    [out] = run_notebooks("synthetic", "quick", size="tiny", device="cpu", results=str(tmp_path / "r"),
                          data_root=str(synthetic_root), only=["augmentations"], out_dir=tmp_path / "out",
                          settings={"n_mels": "24", "window": "hann"})
    nb = nbformat.read(out, as_version=4)
    text = "\n".join(o.get("data", {}).get("text/markdown", "") for c in nb.cells for o in c.get("outputs", []))
    assert "24 mel bands" in text and "<code>window</code> hann" in text, text[:3000]
    print(f"papermill run with settings: {time.time() - t0:.0f} s")


def test_the_notebooks_take_settings_and_apply_them_in_their_set_up_cell():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        params = next("".join(c["source"]) for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
        assert "\nsettings = {}" in params, path.name
        setup = next("".join(c["source"]) for c in cells if "plan = make_plan(" in "".join(c["source"]))
        assert "**settings)" in setup, path.name


def test_relative_results_and_data_are_taken_from_the_project_root(tmp_path, monkeypatch):
    """Jupyter Lab starts kernels in notebooks/, papermill (soundclr reproduce) at the root: both read the same
    results and data; outside a project, and for absolute paths, the paths are used as given."""
    from soundclr.book.plan import make_plan, project_root
    for cwd in (ROOT, ROOT / "notebooks"):
        monkeypatch.chdir(cwd)
        plan = make_plan("synthetic", "quick", size="tiny")
        assert plan.results == str(ROOT / "results") and plan.config.data.data_root == str(ROOT / "data")
    monkeypatch.chdir(tmp_path)
    assert project_root() is None
    plan = make_plan("synthetic", "quick", size="tiny", results=str(tmp_path / "abs"))
    assert plan.results == str(tmp_path / "abs") and plan.config.data.data_root == "data"
    (tmp_path / "proj" / "notebooks").mkdir(parents=True)                 # a copy of the project elsewhere
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "proj")
    monkeypatch.chdir(tmp_path / "proj" / "notebooks")
    assert make_plan("synthetic", "quick", size="tiny").results == str(tmp_path / "proj" / "results")
    (tmp_path / "other" / "notebooks").mkdir(parents=True)                # another project's notebooks/: not ours
    (tmp_path / "other" / "pyproject.toml").write_text('[project]\nname = "other"\n')
    monkeypatch.chdir(tmp_path / "other" / "notebooks")
    assert make_plan("synthetic", "quick", size="tiny").results == "results"


def test_the_book_links_the_page_where_lab_links_the_notebook():
    """The ledger links notebooks (Jupyter Lab opens them); the book's copy links the pages."""
    import nbformat

    from soundclr.book.reproduce import _for_the_book
    html = ('<a href="results.ipynb" data-book-page="results">Results</a> '
            '<a href="training.ipynb" data-book-page="training-hybrid">Training</a> <a href="ablation.ipynb#fig-3">x</a> '
            '<a href="https://example.org/a.ipynb">y</a>')
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Claims"), nbformat.v4.new_code_cell(
        "", outputs=[nbformat.v4.new_output("display_data", data={"text/html": html})])])
    _for_the_book(nb, "synthetic")
    out = nb.cells[1].outputs[0]["data"]["text/html"]
    assert 'href="results.html"' in out and 'href="training-hybrid.html"' in out and 'href="ablation.html#fig-3"' in out
    assert 'href="https://example.org/a.ipynb"' in out and ".ipynb\"" not in out.replace("a.ipynb\"", "")


def test_no_myst_roles_in_the_notebooks_markdown():
    """Jupyter Lab shows {py:func}`...` raw: the notebooks' prose uses inline code."""
    import re
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            assert not re.search(r"\{py:\w+\}`", "".join(cell["source"])), path.name
