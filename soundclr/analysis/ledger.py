"""The claims ledger: each claim of the paper, tested on this build's runs.

:func:`ledger` computes, from the results store, one row per claim of
:mod:`soundclr.analysis.claims`: the effect in accuracy points (epochs or seconds for C8) and its
statistics (:mod:`soundclr.analysis.stats`):

- the fold is the unit: seeds are averaged within a fold, then a paired t interval over the folds,
  and beside it the interval of the ledger's rule (:mod:`soundclr.analysis.rule`: its SD never below
  the noise floor of clips and seeds, with the Nadeau-Bengio factor where the rule names it). The
  verdict uses the rule's: ``supported``, ``contradicted``, ``inconclusive``, or
  ``not testable`` here (the reason is given); a claim true by construction of the schemes is
  ``holds by design``: measured, not tested, outside the counts and Holm's family;
- the rule's power at the paper's effect, the effect it detects with 80 % power and its size, each
  simulated from the noise model fitted to the comparison's runs (:mod:`soundclr.analysis.power`),
  with Monte Carlo errors and a parametric-bootstrap band; the exact sign-flip p beside the t test's,
  and the probability of improvement with its stratified-bootstrap interval;
- Holm's adjustment over the family of claims tested (``p_holm``), a plugin's claims included;
- the same comparison under the paper's protocol (the best epoch on the test fold) and, where the
  runs hold a validation fold, the best epoch chosen on it;
- the primary analysis uses every finished run; converged runs only is a sensitivity check;
- whether both sides trained the same schedule (``same_schedule``).

The ledger is computed once per build: it is cached in ``<results>/<dataset>/.ledger/``, keyed by
the runs' summaries and the code, and every page reads the cache.
"""
from __future__ import annotations

import hashlib
import inspect
import pickle
from pathlib import Path

import pandas as pd

from ..schemes import PAPER_SCHEMES, plugin_files
from ..files import atomic_write_bytes
from ..runs import inference
from .claims import CLAIMS, LITERATURE_CLAIM, claim_ids, own_claims
from .convergence import run_table
from .evidence import (
    add_ablation,
    add_alpha,
    add_ensembles,
    add_masks,
    add_noise,
    add_per_fold,
    add_speed,
)
from .rows import Evidence
from .stats import holm


def ledger(plan, *, bank=None, device: str = "auto", cache: bool = True) -> pd.DataFrame:
    """The claims C1-C11 (with sub-claims) of the paper, tested on ``plan``'s runs: one row per
    claim (columns: see the module docstring and :class:`soundclr.analysis.stats.FoldInterval`). Runs that
    are not finished count as missing.

    Every page of a build shows the same ledger, so it is computed once: with ``cache``, it is kept in
    ``<results>/<dataset>/.ledger/`` under a key made of every run's summary (its path and time), the
    device, and the code of :mod:`soundclr.analysis` (and of the noise evaluation); a finished run more, or a change of
    code, computes it again."""

    path = _ledger_cache(plan, device) if cache else None
    if path is not None and path.is_file():
        try:
            return pickle.loads(path.read_bytes())
        except Exception:           # a damaged cache is only a cache
            pass
    out = _compute_ledger(plan, bank=bank, device=device)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, pickle.dumps(out))
        except OSError:
            pass
    return out


def _ledger_cache(plan, device: str):

    h = hashlib.sha256()
    code = sorted(Path(__file__).parent.glob("*.py")) + [Path(inspect.getfile(inference))]   # all of analysis, and the noise evaluation
    code += [Path(p) for p in plugin_files()]         # and the plugins' (their claims' measurement functions)
    for path in code:
        h.update(path.read_bytes())
    h.update(device.encode())
    for run in [*plan.main_runs(), *plan.alpha_runs(), *plan.ablation_runs(), *plan.masking_runs(), *plan.fill_runs()]:
        summary = run.directory / "summary.json"
        stamp = summary.stat().st_mtime_ns if summary.is_file() else -1
        h.update(f"{run.directory}\0{stamp}\n".encode())
    return Path(plan.results) / plan.config.data.dataset / ".ledger" / f"{h.hexdigest()[:16]}.pkl"


def _compute_ledger(plan, *, bank=None, device: str = "auto") -> pd.DataFrame:
    L = Evidence(plan, bank=bank, device=device)
    main = L.main[L.main.scheme.isin(PAPER_SCHEMES)]      # the paper's claims read the paper's schemes only
    by = {s: main[main.scheme == s] for s in PAPER_SCHEMES}

    # C1, C2: Table III
    L.compare("C1", by["hybrid"], by["ce"])
    L.compare("C2", by["hybrid"], by["supcon"])
    add_alpha(L, run_table(plan.alpha_runs()))
    add_ablation(L, plan, run_table(plan.ablation_runs()))
    add_noise(L, main)
    add_ensembles(L, main)
    add_speed(L, main)
    add_per_fold(L, main)
    add_masks(L, plan, run_table(plan.masking_runs()))
    L.untestable("C11", f"it compares with published numbers on the real datasets ({LITERATURE_CLAIM}), which an offline "
                        "build does not have. "
                        "The paper preset on ESC-50, ESC-10 and UrbanSound8K tests it, on a GPU (the chapter Reproducing, under Using "
                        "the code, gives its cost).")
    for cid in own_claims():          # the claims plugins registered: their own measurement functions
        before = len(L.rows)
        CLAIMS[cid].compute(L, cid)
        if [r["id"] for r in L.rows[before:]] != [cid]:
            raise ValueError(f"claim {cid}: its measurement function must add exactly one row for {cid!r} (with "
                             "evidence.compare(...) or evidence.untestable(...)); it added "
                             f"{[r['id'] for r in L.rows[before:]] or 'none'}")
    out = pd.DataFrame(L.rows).set_index("id").loc[claim_ids()].reset_index()
    out["p_holm"] = holm(out["p"].tolist())
    return out
