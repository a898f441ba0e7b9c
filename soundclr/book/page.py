"""The one set-up call of every notebook: ``page = setup("<page>", globals())``.

A notebook of the book holds three kinds of cell, and nothing else:

1. **the parameters** (tagged ``parameters``, which papermill overrides): ``dataset``, ``preset``, ``size``,
   ``device``, ``results``, ``data_root``, ``epochs``, ``folds``, ``seeds``, ``interactive``, ``settings``,
   ``plugins`` (files of your own schemes and claims) and ``schemes`` (yours beside the paper's), and the page's own (``alphas`` in ``results``, ``noise_stds`` in ``robustness``, ``scheme`` in
   ``training``), each with its default and a comment;
2. **the set-up** (tagged ``remove-input``), the imports and this call::

       from soundclr.book.page import setup
       from soundclr.book.sections import robustness as show
       page = setup("robustness", globals())

   (the page's section module is imported as ``show``: a name no parameter has, where its own name
   may be one, ``results``);
3. **calls into the library**, one or two per cell (e.g. ``show.figure_5(page)``), between markdown
   cells of prose. A cell computes nothing of its own: loops, figures, tables and words live in
   :mod:`soundclr.book.sections` (one module per page), :mod:`soundclr.book.figures` and below.

:func:`setup` reads the parameters by name from the namespace papermill filled, sets up warnings and
matplotlib (inline figures, the book's style), builds the :class:`~soundclr.book.plan.Plan`, and shows
the Settings, Provenance and Runs lines for the runs the page reads. The :class:`Page` it returns is
what the section functions take: the plan, the parameters, and helpers (the claims ledger computed once,
training the missing runs with progress bars only where ``interactive``, frames of runs).

Links. A notebook's prose is written for Jupyter Lab: a book page is linked relative to ``notebooks/``
(``../book/tuning.md``), a sibling notebook by its file (``claims.ipynb#...``).
The library's prose (the Settings line, the conclusions) is written the same way.
:func:`soundclr.book.reproduce._for_the_book` rewrites both for the built book, where the executed
notebooks live in ``book/generated/<dataset>/``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..analysis.ledger import ledger
from ..config import ConfigError
from ..data.bank import load_bank
from ..runs.store import frame
from . import figures
from ..schemes import load_plugins
from .plan import Plan, make_plan, project_path
from .reproduce import PER_RUN, check_settings

# Every notebook's parameters, and each page's own.
PARAMETERS = ("dataset", "preset", "size", "device", "results", "data_root", "epochs", "folds", "seeds",
              "interactive", "settings", "plugins", "schemes")
PAGE_PARAMETERS = {"results": ("alphas",), "robustness": ("noise_stds",), "training": ("scheme",)}

# The runs each page reads (its Runs line).
PAGE_RUNS: dict[str, Callable[[Plan, dict], list]] = {
    "ablation": lambda plan, p: [*plan.ablation_runs(), *plan.masking_runs(), *plan.fill_runs()],
    "augmentations": lambda plan, p: plan.ablation_runs(),      # its conclusion reads the ablation
    "claims": lambda plan, p: plan.all_runs(),
    "representations": lambda plan, p: plan.main_runs(),
    "results": lambda plan, p: [*plan.main_runs(), *plan.alpha_runs()],
    "robustness": lambda plan, p: plan.main_runs(),
    "training": lambda plan, p: plan.main_runs([p["scheme"]]),
}

@dataclass
class Page:
    """A notebook's set-up: ``name`` (the notebook: ``results``, ``training``, ...), the ``plan``, the
    notebook's parameters in ``params``, and helpers for the section functions."""
    name: str
    plan: Plan
    params: dict[str, Any]
    memo: dict[str, Any] = field(default_factory=dict, repr=False)

    # -- the parameters ----------------------------------------------------------------------------
    @property
    def interactive(self) -> bool:
        """Sliders and progress bars (Jupyter Lab); False when the book is built."""
        return bool(self.params["interactive"])

    @property
    def device(self) -> str:
        return self.params["device"]

    @property
    def dataset(self) -> str:
        return self.params["dataset"]

    @property
    def config(self):
        """The plan's configuration, resolved (every derived setting filled in)."""
        return self.cached("config", lambda: self.plan.config.resolved())

    def __getitem__(self, name: str) -> Any:
        """A parameter of the notebook by name: ``page["scheme"]``."""
        return self.params[name]

    # -- computed once per page -------------------------------------------------------------------
    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` the first time ``key`` is asked for, the same object afterwards (cells run again,
        or out of order in Lab, reuse it)."""
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]

    @property
    def bank(self):
        """The dataset at the plan's sample rate (:func:`soundclr.data.bank.load_bank`), decoded once."""
        return self.cached("bank", lambda: load_bank(self.plan.config, progress=False))

    @property
    def ledger(self):
        """The claims ledger of the plan's runs (:func:`soundclr.analysis.ledger.ledger`: one row per
        claim), computed on first use (and cached across the pages of a build)."""
        return self.cached("ledger", lambda: ledger(self.plan, bank=self.memo.get("bank"), device=self.device))

    def ledger_if_finished(self, runs):
        """The ledger when every run in ``runs`` is finished, else None (a conclusion then says so)."""
        return self.ledger if self.plan.finished(runs) else None

    # -- runs ---------------------------------------------------------------------------------------
    @property
    def runs(self) -> list:
        """The runs this page reads (those of its Runs line)."""
        return PAGE_RUNS[self.name](self.plan, self.params)

    def train_missing(self, runs) -> None:
        """Train the runs of ``runs`` the store does not hold yet: progress bars in Lab (``interactive``),
        lines in a book build (:meth:`soundclr.book.plan.Plan.train_missing`)."""
        self.plan.train_missing(runs, bars=self.interactive)

    def frame(self, runs):
        """The summaries of ``runs`` (:func:`soundclr.runs.store.frame`: a row per finished run), training
        the missing ones first."""
        runs = list(runs)
        self.train_missing(runs)
        return frame(runs)

    # -- showing ------------------------------------------------------------------------------------
    @staticmethod
    def show(*objects) -> None:
        """Display each of ``objects``: a string as Markdown (links in the notebooks' form), anything else
        (a table, HTML, audio) as IPython displays it; None is skipped."""
        from IPython.display import Markdown, display  # IPython: the book extra's (a notebook's kernel)
        for obj in objects:
            if obj is None or (isinstance(obj, str) and not obj.strip()):
                continue
            display(Markdown(obj) if isinstance(obj, str) else obj)


def read_parameters(name: str, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The notebook's parameters from ``namespace`` (the notebook's ``globals()``), by name; a missing
    one is an error naming it (the parameters cell was edited or not run)."""
    if name not in PAGE_RUNS:
        raise ValueError(f"no page {name!r}: the pages are {', '.join(sorted(PAGE_RUNS))}")
    names = (*PARAMETERS, *PAGE_PARAMETERS.get(name, ()))
    missing = [n for n in names if n not in namespace]
    if missing:
        raise NameError(f"the {name} notebook's parameters cell does not set {', '.join(missing)}: run it first "
                        "(or restore the names it had)")
    return {n: namespace[n] for n in names}


def merge_settings(params: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
    """The ``settings`` parameter checked against the preset and the notebook's other parameters:
    returns the settings for :func:`~soundclr.book.plan.make_plan` and the epochs.

    A setting that is also a parameter of the notebook is taken where the two cannot disagree:
    ``settings={"epochs": 5}`` with ``epochs = None`` trains 5 epochs, and with ``epochs = 5`` too; with
    another ``epochs`` it is a ConfigError naming both. ``dataset``, ``device`` and ``data_root`` in
    ``settings`` are errors naming the parameter to set instead; ``scheme``, ``test_fold`` and ``seed``
    are the plan's, run by run. Unknown names and bad values: ConfigError, as ``soundclr reproduce --set``."""
    settings = dict(params.get("settings") or {})
    for key in list(settings):
        bare = str(key).replace("-", "_").split(".")[-1]
        if bare in ("dataset", "device", "data_root", "preset", "size", "results", "folds", "seeds",
                    "interactive", "alphas", "noise_stds", "plugins", "schemes") and bare in params:
            raise ConfigError(f"settings={{{key!r}: {settings[key]!r}}} names the notebook's parameter {bare!r} "
                              f"(now {params[bare]!r}): set {bare} = ... in the parameters cell instead")
        if bare in PER_RUN:
            raise ConfigError(f"settings={{{key!r}: ...}}: {bare!r} is set run by run by the book's grids (every "
                              "scheme, test fold and seed of the plan)"
                              + (": use the parameter scheme = ... of the training page" if bare == "scheme" else
                                 ": use the parameters folds = [...] and seeds = [...]"))
    rest, epochs = check_settings(params["dataset"], params["preset"], settings)
    given = params.get("epochs")
    if epochs is not None and given is not None and int(given) != epochs:
        raise ConfigError(f"settings={{'epochs': {epochs}}} and the parameter epochs = {given} disagree: "
                          "give the number of epochs once (the parameter epochs)")
    return rest, given if given is not None else epochs


def setup(name: str, namespace: Mapping[str, Any]) -> Page:
    """Set up the notebook ``name`` from its parameters in ``namespace`` (pass ``globals()``): warnings,
    inline figures in the book's style, the plan, and the Settings, Provenance and Runs lines shown
    under the title. Returns the :class:`Page` the section functions take."""
    params = read_parameters(name, namespace)
    warnings.filterwarnings("ignore", message="n_jobs value")          # umap: seeded, hence single-threaded
    warnings.filterwarnings("ignore", message="IProgress not found")   # umap imports tqdm.auto; no bars on these pages
    _inline_figures()
    figures.style()
    load_plugins([project_path(p) for p in params["plugins"] or []])   # before any name of theirs is read
    settings, epochs = merge_settings(params)
    extra = {k: params[k] for k in ("alphas", "noise_stds") if k in params}
    plan = make_plan(params["dataset"], params["preset"], size=params["size"], device=params["device"],
                     results=params["results"], data_root=params["data_root"], epochs=epochs, folds=params["folds"],
                     seeds=params["seeds"], schemes=params["schemes"], **extra, **settings)
    page = Page(name, plan, params)
    if name != "claims":               # the Claims page puts its scope first (sections.claims.scope shows these after it)
        show_lines(page)
    return page


def show_lines(page: Page) -> None:
    """The Settings, Provenance and Runs lines under a page's title."""
    plan = page.plan
    page.show(plan.settings_line(here=page.name), plan.provenance_line(), plan.runs_line(page.runs))


def _inline_figures() -> None:
    """``%matplotlib inline`` where an IPython kernel runs the notebook (nothing elsewhere), with PNGs that record
    their smallest text (:func:`soundclr.book.figures.png_with_text_size`)."""
    try:
        from IPython import get_ipython  # the book extra's: soundclr without it has no notebooks
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and type(shell).__name__ != "TerminalInteractiveShell":
        shell.run_line_magic("matplotlib", "inline")
        from matplotlib.figure import Figure      # each figure's PNG records its smallest text (make check-book reads it)
        shell.display_formatter.formatters["image/png"].for_type(Figure, figures.png_with_text_size)
