"""Every setting through papermill and `soundclr reproduce --set` (issue 17, item 2), and the notebooks'
relative results and data folders taken from the project root wherever the kernel starts (item 5)."""
import json
import re
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
    monkeypatch.setattr(soundclr.book.reproduce, "train_in_processes", lambda cmd, workers, data: seen.append(cmd))
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


def _cells(path: Path) -> list[dict]:
    return [{**c, "source": "".join(c["source"])} for c in json.loads(path.read_text(encoding="utf-8"))["cells"]]


NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_the_notebooks_take_settings_and_pass_their_parameters_to_one_set_up_call():
    """Cell 1: the parameters (settings among them); cell 2: the set-up call, which reads them by name."""
    for path in NOTEBOOKS:
        code = [c for c in _cells(path) if c["cell_type"] == "code"]
        assert "parameters" in code[0]["metadata"].get("tags", []), path.name
        assert "\nsettings = {}" in code[0]["source"], path.name
        assert "remove-input" in code[1]["metadata"].get("tags", []), path.name
        assert code[1]["source"] == (f"from soundclr.book.page import setup\n"
                                     f"from soundclr.book.sections import {path.stem} as show\n"
                                     f"page = setup(\"{path.stem}\", globals())"), path.name


CALL = re.compile(r"^(show\.\w+\(page\)|page\.\w+\(page\.plan\.\w+\(\)\))$")


def test_the_notebooks_hold_no_logic_of_their_own():
    """Issue 18: after the set-up, a code cell is one or two calls into the library, nothing else."""
    for path in NOTEBOOKS:
        code = [c for c in _cells(path) if c["cell_type"] == "code"][2:]
        assert code, path.name
        for cell in code:
            lines = cell["source"].splitlines()
            assert 1 <= len(lines) <= 2 and all(CALL.match(line) for line in lines), (path.name, cell["source"])
            assert set(cell["metadata"].get("tags", [])) & {"hide-input", "remove-input"}, (path.name, cell["source"])


def test_every_section_a_notebook_calls_exists():
    import importlib
    for path in NOTEBOOKS:
        module = importlib.import_module(f"soundclr.book.sections.{path.stem}")
        for cell in _cells(path):
            for name in re.findall(r"^show\.(\w+)\(", cell["source"], flags=re.M) if cell["cell_type"] == "code" else []:
                assert callable(getattr(module, name, None)), f"{path.name}: soundclr.book.sections.{path.stem}.{name}"


def _namespace(**given) -> dict:
    ns = {"dataset": "synthetic", "preset": "quick", "size": "tiny", "device": "cpu", "results": "results",
          "data_root": "data", "epochs": None, "folds": None, "seeds": None, "interactive": False, "settings": {},
          "plugins": [], "schemes": None}
    return {**ns, **given}


def test_settings_may_hold_epochs_when_the_parameter_does_not_disagree():
    from soundclr.book.page import merge_settings
    from soundclr.config import ConfigError
    assert merge_settings(_namespace(settings={"epochs": 5})) == ({}, 5)
    assert merge_settings(_namespace(settings={"epochs": "5", "n_mels": 24}, epochs=5)) == ({"n_mels": 24}, 5)
    assert merge_settings(_namespace(epochs=3)) == ({}, 3)
    with pytest.raises(ConfigError, match=r"settings=\{'epochs': 5\} and the parameter epochs = 3 disagree"):
        merge_settings(_namespace(settings={"epochs": 5}, epochs=3))


@pytest.mark.parametrize("settings, words", [
    ({"dataset": "esc50"}, "names the notebook's parameter 'dataset'"),
    ({"data-root": "/x"}, "names the notebook's parameter 'data_root'"),
    ({"device": "cuda"}, "names the notebook's parameter 'device'"),
    ({"seed": 3}, "'seed' is set run by run"),
    ({"scheme": "ce"}, "the parameter scheme"),
    ({"bogus": 1}, "unknown setting 'bogus'"),
])
def test_settings_that_a_parameter_names_are_errors_naming_both(settings, words):
    from soundclr.book.page import merge_settings
    from soundclr.config import ConfigError
    with pytest.raises(ConfigError, match=re.escape(words)):
        merge_settings(_namespace(settings=settings))


def test_setup_builds_the_plan_from_the_notebooks_parameters(tmp_path, monkeypatch):
    import IPython.display

    from soundclr.book.page import setup
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(getattr(obj, "data", obj)))
    page = setup("training", _namespace(results=str(tmp_path / "r"), settings={"epochs": 4, "n_mels": 24},
                                        scheme="supcon", folds=[2]))
    assert page.plan.config.optim.epochs == 4 and page.plan.config.features.n_mels == 24 and page.plan.folds == [2]
    assert page["scheme"] == "supcon" and not page.interactive and page.device == "cpu"
    assert [r.config.run.scheme for r in page.runs] == ["supcon"] * len(page.runs)
    assert shown[0].startswith("**Settings**") and "24 mel bands" in shown[0] and "](../book/results.md#" in shown[0]
    assert shown[-1].startswith("**Runs**: this page reads 2 training runs; 0 finished")
    with pytest.raises(NameError, match="does not set scheme"):
        setup("training", _namespace())


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
    """Jupyter Lab shows {py:func}`...` or {cite:p}`...` raw: the notebooks' prose uses inline code, and a
    citation is a link with the key in its title, which the book's copy turns into {cite:p}."""
    for path in NOTEBOOKS:
        for cell in _cells(path):
            assert not re.search(r"\{[\w-]+(:[\w-]+)?\}`", cell["source"]), path.name


LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _local_links(text: str) -> list[str]:
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


def test_the_notebooks_links_resolve_in_lab_and_in_the_book():
    """A link in a notebook's prose names a file next to the notebook (Lab resolves it from notebooks/);
    the book's copy (book/generated/<dataset>/) links the same page."""
    import nbformat

    from soundclr.book.reproduce import _for_the_book
    seen = 0
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        links = [t for c in nb.cells if c.cell_type == "markdown" for t in _local_links(c.source)]
        for target in links:
            assert (path.parent / target.split("#")[0]).is_file(), f"{path.name}: {target} is dead in Lab"
        _for_the_book(nb, "synthetic")
        book = ROOT / "book" / "generated" / "synthetic"
        for target in [t for c in nb.cells if c.cell_type == "markdown" for t in _local_links(c.source)]:
            file = target.split("#")[0]
            assert file.endswith(".ipynb") or (book / file).resolve().is_file(), f"{path.name}: {target} is dead in the book"
        seen += len(links)
    assert seen >= 4


def test_the_book_gets_book_links_and_citations_where_lab_gets_files():
    from soundclr.book.reproduce import book_html, book_markdown
    lab = ('UMAPs ([McInnes et al., 2018](https://arxiv.org/abs/1802.03426 "cite:mcinnes2018umap")) of $h$; '
           '[how](../book/results.md#how-to-read-these-pages), [the tuning page](../book/tuning.md), [c](claims.ipynb#x)')
    assert book_markdown(lab) == ("UMAPs {cite:p}`mcinnes2018umap` of $h$; [how](../../results.md#how-to-read-these-pages), "
                                  "[the tuning page](../../tuning.md), [c](claims.ipynb#x)")
    assert book_html('<a href="../book/tuning.md#x">t</a>') == '<a href="../../tuning.html#x">t</a>'
