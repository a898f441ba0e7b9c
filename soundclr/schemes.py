"""The training schemes: one record per scheme, the one place their vocabulary lives.

The paper's three (``ce``, ``supcon``, ``hybrid``) are registered here; a method of your own is one
file that calls :func:`register` (see ``examples/label_smoothing.py``) and is loaded with
``--plugin FILE`` (``soundclr train``, ``status``, ``evaluate``, ``predict``) or :func:`load_plugin`.
Everything that trains, records, tabulates or draws a scheme reads it from here: the loop, the step,
the checkpoints, the summaries, the tables, the figures and the pages iterate over the registered
schemes and assume no number of them.

A loaded plugin's path goes into the environment (:data:`PLUGIN_ENV`), so the processes a command
starts (training workers, SLURM jobs, notebook kernels) register the same schemes; a name that is
not registered is looked up again after loading what the environment names.

A scheme's loss takes the configuration, the model's output (``logits (batch, classes)`` and
``projection (batch, P)``) and ``labels (batch,)``, and returns a scalar tensor; it must not read a
tensor's value on the host (the step runs it every batch). A two-stage scheme's loss is its stage 1;
its stage 2 trains a linear classifier on the frozen representation with cross-entropy (Eq. 2), as
the paper's SupCon scheme does.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import losses

PLUGIN_ENV = "SOUNDCLR_PLUGINS"     # os.pathsep-separated plugin files, loaded by every process that needs them

# Heads a loss may train: the linear classifier on h, and the projection head's output z.
HEADS = ("classifier", "projection")


@dataclass(frozen=True)
class Scheme:
    """A training scheme.

    ``name``: the identifier in configurations, run names and ``--schemes`` (lowercase letters, digits,
    ``_``). ``label``: its name in tables and figures. ``loss(cfg, out, labels)``: the loss of stage 1
    (the only stage of a one-stage scheme). ``heads``: the heads that loss trains (:data:`HEADS`).
    ``two_stage``: stage 2 trains a linear classifier on the frozen encoder (stage 1 has no accuracy).
    ``contrastive``: stage 1 minimises a contrastive term, so it is ``contrastive_stretch`` times as
    long (the paper's SupCon and hybrid). ``minimises``: words for its training page ("It minimises
    ..."; ``{a}`` and ``{b}`` stand for alpha and 1 - alpha). ``loss_name``: its stage-1 loss on the
    learning curves' axis. ``color``: its colour in every figure. ``claims``: the ledger's claims its
    training page concludes on. ``source``: the plugin file it came from (None: built in); a plugin
    scheme's runs are identified by the file's contents too, so editing it trains them again.
    """
    name: str
    label: str
    loss: Callable[..., Any]
    heads: tuple[str, ...] = ("classifier",)
    two_stage: bool = False
    contrastive: bool = False
    minimises: str = ""
    loss_name: str = "training loss"
    color: str = "#8172b3"
    claims: tuple[str, ...] = ()
    source: str | None = None

    @property
    def trains_projection(self) -> bool:
        return "projection" in self.heads

    @property
    def uses_every_parameter(self) -> bool:
        """Whether stage 1's loss reaches every parameter (DistributedDataParallel must be told otherwise)."""
        return set(HEADS) <= set(self.heads) and not self.two_stage


# -- the paper's three schemes (Eq. 2-4 live in soundclr.losses) ----------------------------------
def _ce(cfg, out, labels):
    return losses.cross_entropy_loss(out.logits, labels)                                    # Eq. 2


def _supcon(cfg, out, labels):
    o = cfg.optim
    return losses.supcon_loss(out.projection, labels, o.temperature, form=o.supcon_form,     # Eq. 3 (stage 1)
                              no_positive=o.no_positive)


def _hybrid(cfg, out, labels):
    o = cfg.optim
    return losses.hybrid_loss(out.projection, out.logits, labels, o.alpha, o.temperature,    # Eq. 4
                              form=o.supcon_form, no_positive=o.no_positive)


PAPER_SCHEMES = ("ce", "supcon", "hybrid")      # the paper's, in the book's order: the default grids
_REGISTRY: dict[str, Scheme] = {}
_LOADED: dict[str, list[str]] = {}              # plugin path (resolved) -> the schemes it registered


def register(scheme: Scheme, *, replace: bool = False) -> Scheme:
    """Add ``scheme`` to the registry (a plugin file calls this at import). A name taken by another scheme
    is an error unless ``replace``; the paper's three cannot be replaced."""
    if not isinstance(scheme, Scheme):
        raise TypeError(f"register() takes a soundclr.schemes.Scheme, not {type(scheme).__name__}")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", scheme.name):
        raise ValueError(f"scheme name {scheme.name!r} is not valid: use lowercase letters, digits and _ (it names runs "
                         "and folders), starting with a letter")
    bad = [h for h in scheme.heads if h not in HEADS]
    if bad or not scheme.heads:
        raise ValueError(f"scheme {scheme.name!r}: heads={scheme.heads!r} is not valid: name one or both of {', '.join(HEADS)}")
    if not callable(scheme.loss):
        raise TypeError(f"scheme {scheme.name!r}: loss must be a function loss(cfg, out, labels) -> scalar tensor")
    old = _REGISTRY.get(scheme.name)
    if old is not None and old != scheme:
        if scheme.name in PAPER_SCHEMES or not replace:
            raise ValueError(f"scheme {scheme.name!r} is registered already (from {old.source or 'soundclr'}): choose another "
                             "name" + ("" if scheme.name in PAPER_SCHEMES else " or pass replace=True"))
    _REGISTRY[scheme.name] = scheme
    return scheme


register(Scheme("ce", "Cross-entropy", _ce, heads=("classifier",), color="#4c72b0", claims=("C1", "C8c"),
                minimises="the cross-entropy of a linear classifier on the representation h (the paper's baseline; its "
                          "projection head is built but no loss trains it)"))
register(Scheme("supcon", "SupCon, two stages", _supcon, heads=("projection",), two_stage=True, contrastive=True,
                color="#dd8452", loss_name="SupCon loss (stage 1)", claims=("C2", "C6a", "C8a", "C8b"),
                minimises="in stage 1 the supervised contrastive loss on the projection z (no classifier yet, so stage 1 "
                          "has no accuracy); in stage 2 the encoder is frozen and a linear classifier on h minimises the "
                          "cross-entropy. The two stages' losses are different functions, each drawn on its own axis"))
register(Scheme("hybrid", "Hybrid (SoundCLR)", _hybrid, heads=("classifier", "projection"), contrastive=True,
                color="#55a868", claims=("C1", "C2", "C8a", "C8b", "C8c"),
                minimises="{a:g} x the supervised contrastive loss on z + {b:g} x the cross-entropy of the classifier on h "
                          "(alpha = {a:g}), in one stage: SoundCLR"))


# -- plugins ------------------------------------------------------------------------------------
def load_plugin(path: str | os.PathLike) -> list[str]:
    """Import the plugin file ``path`` once per process (it registers schemes, and claims with
    :func:`soundclr.analysis.claims.register`), and name it in the environment for the processes this
    one starts. Returns the names of the schemes it registered."""
    p = Path(path).expanduser().resolve()
    if not p.is_file() or p.suffix != ".py":
        raise FileNotFoundError(f"plugin {path}: no such Python file (give the path of a .py file that calls "
                                "soundclr.schemes.register or soundclr.analysis.claims.register, e.g. "
                                "examples/label_smoothing.py)")
    key = str(p)
    if key not in _LOADED:
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        before = set(_REGISTRY)
        spec = importlib.util.spec_from_file_location(f"soundclr_plugin_{digest[:12]}", p)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        try:
            spec.loader.exec_module(module)
        except Exception:
            sys.modules.pop(spec.name, None)
            raise
        _LOADED[key] = sorted(set(_REGISTRY) - before)
        for name in _LOADED[key]:                      # the file's contents identify its schemes' runs
            _REGISTRY[name] = Scheme(**{**_REGISTRY[name].__dict__, "source": f"{p.name}@{digest[:12]}"})
    paths = _env_paths()
    if key not in paths:
        os.environ[PLUGIN_ENV] = os.pathsep.join([*paths, key])
    return _LOADED[key]


def load_plugins(paths) -> list[str]:
    """:func:`load_plugin` for each of ``paths`` (a list, or one comma-separated string); the names registered."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [x for x in str(paths).split(",") if x.strip()]
    return [name for path in paths or () for name in load_plugin(str(path).strip())]


def plugin_files() -> list[str]:
    """The plugin files this process has loaded or its environment names (resolved paths)."""
    _load_from_env()
    return list(_LOADED)


def _env_paths() -> list[str]:
    return [x for x in os.environ.get(PLUGIN_ENV, "").split(os.pathsep) if x]


def _load_from_env() -> None:
    for path in _env_paths():
        if path not in _LOADED:        # the environment holds resolved paths, as load_plugin keys them
            load_plugin(path)


# -- lookups --------------------------------------------------------------------------------------
def get(name: str) -> Scheme:
    """The scheme ``name``; an unknown name is looked up again after loading the environment's plugins,
    then is a ValueError naming the registered schemes and how to add one."""
    if name not in _REGISTRY:
        _load_from_env()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"scheme {name!r} is not registered: the schemes are {', '.join(names())} (a scheme of your own: "
                         "a file that calls soundclr.schemes.register, loaded with --plugin FILE)") from None


def names() -> tuple[str, ...]:
    """Every registered scheme: the paper's three first, then the plugins' in the order they were loaded."""
    _load_from_env()
    return tuple(_REGISTRY)


def in_order(present) -> list[str]:
    """The schemes in ``present`` in the registry's order (the book's: ce, supcon, hybrid, then yours)."""
    present = set(present)
    return [s for s in names() if s in present]


def label_of(name: str) -> str:
    """The scheme's name in tables and figures (an unregistered name is shown as it is)."""
    if name not in _REGISTRY:
        _load_from_env()
    return _REGISTRY[name].label if name in _REGISTRY else name


def color_of(name: str) -> str:
    return get(name).color
