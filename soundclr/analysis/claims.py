"""The paper as data: its published numbers (Tables II to IV), once, and its claims, one
:class:`Claim` record per claim (C1 to C11) with the paper's effect and where it states it, what
this build measures, and the page that holds the evidence.

A claim of your own is one record more: a :class:`Claim` with a measurement function, registered with
:func:`register` from a plugin file (``--plugin FILE``; ``examples/label_smoothing.py`` registers
"label smoothing beats cross-entropy" with :func:`soundclr.analysis.rows.beats`). It joins the
ledger after the paper's claims, with the same statistics, fairness check and Holm family, and the
conclusion of its evidence page.

Nothing here computes: :mod:`soundclr.analysis.evidence` tests each claim on the runs,
:mod:`soundclr.analysis.ledger` puts the rows together, :mod:`soundclr.analysis.tables` sets the
paper's numbers beside this build's. (The paper's *claims* are unrelated to the workers' run
*leases* of :mod:`soundclr.runs.lease`.)
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from ..schemes import names as scheme_names

# -- the paper's published numbers ---------------------------------------------------------------
# Table III: (mean, sd, best) accuracy per scheme and dataset, over 5 seeds.
PAPER_TABLE3 = {
    "esc50": {"ce": (91.85, 0.64, 92.65), "supcon": (91.98, 0.68, 92.85), "hybrid": (92.86, 0.46, 93.4)},
    "esc10": {"ce": (99.0, 0.47, 99.5), "supcon": (99.25, 0.59, 99.75), "hybrid": (99.6, 0.14, 99.75)},
    "us8k": {"ce": (85.28, 0.69, 86.16), "supcon": (84.69, 0.98, 86.09), "hybrid": (85.78, 0.51, 86.49)},
}
# Table II: accuracy per alpha and dataset.
PAPER_TABLE2 = {
    "esc50": {0.01: 91.85, 0.25: 92.25, 0.5: 93.2, 0.75: 92.8, 0.99: 92.7},
    "esc10": {0.01: 99.25, 0.25: 99.5, 0.5: 99.75, 0.75: 99.25, 0.99: 99.25},
    "us8k": {0.01: 85.03, 0.25: 85.46, 0.5: 85.96, 0.75: 84.94, 0.99: 84.72},
}
# Table IV: model, architecture, ESC-50, ESC-10, US8K (None: not reported).
LITERATURE = [
    ("Human (the ESC dataset paper, Piczak 2015)", "-", 81.3, 95.7, None), ("Piczak-CNN", "2 conv + 2 FC", 64.5, 90.2, 73.7),
    ("EnvNet-v2", "10 conv + 3 FC", 84.7, 91.3, 78.3), ("ESResNet", "ResNet-50", 90.8, 96.75, 84.9),
    ("ESResNet-Attention", "ResNet-50 + attention", 91.5, 97.0, 85.42),
    ("ResNet [Palanisamy]", "ResNet-50", 90.93, None, 85.03), ("DenseNet [Palanisamy]", "DenseNet-201", 91.52, None, 85.31),
    ("SoundCLR (paper)", "ResNet-50", 93.4, 99.75, 86.49),
    ("ResNet-Ensemble [Palanisamy]", "5 x ResNet-50", 92.64, None, 87.35),
    ("DenseNet-Ensemble [Palanisamy]", "5 x DenseNet-201", 92.89, None, 87.42),
    ("SoundCLR-Ensemble (paper)", "5 x ResNet-50", 93.6, 99.75, 88.01),
]
# Table III's means, per dataset and scheme (what a decisive test's power is computed at).
PAPER_ACCURACY = {ds: {s: v[0] for s, v in row.items()} for ds, row in PAPER_TABLE3.items()}

# -- how the claims are tested ---------------------------------------------------------------------
NEAR_FINAL = 0.95                          # C8: the target is 95 % of the lower of the two sides' final accuracies
PAPER_NOISE_LEVELS = (1e-4, 5e-4, 1e-3)    # C6: the paper's noise levels (Fig. 5), the clean clip being 0
NOISE_DRAWS = 3                            # C6: noise draws averaged per level
BY_DESIGN = "holds by design"
VERDICTS = ("supported", "contradicted", "inconclusive", BY_DESIGN, "not testable")
# C9's non-inferiority margin (points): "at least as good" fails only where the rival is better by more. One
# point: the paper's own Table III seed-to-seed SDs (0.46 to 0.68 points on ESC-50) put smaller differences
# within its runs' spread, and it is the size of its smallest reported advantage on ESC-50 (+0.88 over SupCon).
NONINFERIORITY_MARGIN = 1.0


def c9_margin(clips: int) -> float:
    """C9's non-inferiority margin on folds of ``clips`` test clips: the paper's scale (NONINFERIORITY_MARGIN, one
    point), but never below one clip of the fold, the smallest difference a fold can show."""
    return max(NONINFERIORITY_MARGIN, 100.0 / clips)


PROTOCOLS = {"final": "acc", "best_test": "acc_best_test", "best_val": "acc_best_val"}
PROTOCOL_LABEL = {"final": "final epoch (ours)", "best_test": "best epoch on the test fold (the paper's)",
                  "best_val": "best epoch on a validation fold"}
POWER_TARGET = 0.80


@dataclass(frozen=True)
class Claim:
    """One claim of the paper: what it says, what this build measures, where the evidence is shown,
    and the paper's own effect (in ``unit``, per dataset; empty where the paper gives a figure or a
    sentence, not a number) with its source."""
    id: str
    text: str
    measure: str
    evidence: str                                 # the book page that shows it
    source: str                                   # where the paper states it
    paper_effect: dict[str, float] = field(default_factory=dict)
    unit: str = "points"
    by_design: str = ""         # why the claim holds by construction of the schemes (not a test), or ""
    # A claim of your own: compute(evidence, claim_id) adds its one row to the ledger being built
    # (soundclr.analysis.rows.Evidence: .compare(...) or .untestable(...)); the paper's are computed by evidence.py.
    compute: Callable[[Any, str], None] | None = None


def _table3(scheme: str, rival: str) -> dict[str, float]:
    return {ds: row[scheme][0] - row[rival][0] for ds, row in PAPER_TABLE3.items()}


def _table4(model: str) -> dict[str, float]:
    """A row of Table IV by model name: its accuracy per dataset where the paper reports one."""
    row = next(r for r in LITERATURE if r[0] == model)
    return {ds: v for ds, v in zip(("esc50", "esc10", "us8k"), row[2:]) if v is not None}


def _best_single_model() -> dict[str, float]:
    """Per dataset, the best single model of the literature in Table IV (neither SoundCLR, an ensemble nor humans)."""
    rows = [_table4(r[0]) for r in LITERATURE if not r[0].startswith(("SoundCLR", "Human")) and "Ensemble" not in r[0]]
    return {ds: max(r[ds] for r in rows if ds in r) for ds in ("esc50", "esc10", "us8k")}


_ENSEMBLE, _SINGLE = _table4("SoundCLR-Ensemble (paper)"), _table4("SoundCLR (paper)")


_STAGES = ("the two-stage scheme trains its whole SupCon stage before its classifier exists, so it can score no "
           "accuracy before the hybrid's whole schedule (as long as that stage) has run: it reaches any accuracy "
           "target later whenever the hybrid reaches it at all. The build records no classifier-free score of "
           "stage 1 (a kNN probe would give one), so no testable form of this claim exists here; C8c, against "
           "cross-entropy on the same schedule, is the tested speed claim")
_NOISE = ", ".join(f"{s:g}" for s in PAPER_NOISE_LEVELS)
_NEAR = f"{100 * NEAR_FINAL:g} %"

CLAIMS: dict[str, Claim] = {c.id: c for c in [
    Claim("C1", "the hybrid loss beats cross-entropy", "hybrid minus cross-entropy, final-epoch accuracy",
          "results", "Table III, mean of 5", _table3("hybrid", "ce")),
    Claim("C2", "the hybrid loss beats two-stage supervised contrastive learning",
          "hybrid minus two-stage SupCon, final-epoch accuracy", "results", "Table III, mean of 5",
          _table3("hybrid", "supcon")),
    Claim("C3", "alpha = 0.5 is the best weight of the hybrid loss",
          "alpha = 0.5 minus the best other alpha (simultaneous over the other alphas)", "results",
          "Table II, vs the next best alpha",
          {ds: row[0.5] - max(v for a, v in row.items() if a != 0.5) for ds, row in PAPER_TABLE2.items()}),
    Claim("C4a", "wave augmentation helps", "with minus without wave augmentation (cross-entropy)", "ablation",
          "Fig. 3 text", {"esc50": 1.6}),
    Claim("C4b", "spectrogram masks help, on top of wave augmentation",
          "with minus without spectrogram masks, both with wave augmentation (cross-entropy)", "ablation",
          "Fig. 3 text", {"esc50": 1.45}),
    Claim("C5a", "three input channels beat one (with ImageNet weights)", "3 minus 1 input channels, ImageNet weights",
          "ablation", "Fig. 3 text: more than 4 points", {"esc50": 4.0}),
    Claim("C5b", "ImageNet weights beat random initialisation", "ImageNet minus random initialisation, 1 channel",
          "ablation", "Fig. 3 text", {"esc50": 84.6 - 74.6}),
    Claim("C6a", "SupCon-trained models lose less accuracy under white noise than cross-entropy ones",
          f"mean accuracy lost at noise std {_NOISE} ({NOISE_DRAWS} noise draws): cross-entropy's minus SupCon's",
          "robustness", "Fig. 5, no number"),
    Claim("C6b", "SupCon-trained models lose less accuracy under white noise than hybrid ones",
          f"mean accuracy lost at noise std {_NOISE} ({NOISE_DRAWS} noise draws): the hybrid's minus SupCon's",
          "robustness", "Fig. 5, no number"),
    Claim("C7a", "an ensemble of hybrid models beats a single one",
          "ensemble of the fold's hybrid models minus their mean single accuracy", "results", "Table IV vs Table III",
          {ds: v - PAPER_TABLE3[ds]["hybrid"][0] for ds, v in _ENSEMBLE.items()}),
    Claim("C7b", "an ensemble of hybrid models beats an ensemble of cross-entropy models",
          "ensemble of the fold's hybrid models minus the ensemble of its cross-entropy models", "results",
          "Table IV: SoundCLR-Ensemble vs ResNet-Ensemble (Palanisamy et al.), ResNet-50s trained with cross-entropy",
          {ds: _ENSEMBLE[ds] - v for ds, v in _table4("ResNet-Ensemble [Palanisamy]").items()}),
    Claim("C8a", "the hybrid trains in fewer epochs than the two-stage scheme",
          f"epochs to {_NEAR} of the lower final accuracy: the two-stage scheme's (stage 1 + 2) minus the hybrid's",
          "training-hybrid", "Sec. IV-D, no number", unit="epochs", by_design=_STAGES),
    Claim("C8b", "the hybrid trains in less time than the two-stage scheme",
          f"training seconds to {_NEAR} of the lower final accuracy: the two-stage scheme's minus the hybrid's",
          "training-hybrid", "Sec. IV-D, no number", unit="seconds", by_design=_STAGES),
    Claim("C8c", "the hybrid converges faster than cross-entropy (the same schedule)",
          f"epochs to {_NEAR} of the lower final accuracy: cross-entropy's minus the hybrid's, same schedule",
          "training-hybrid", "Sec. III-C, no number", unit="epochs"),
    Claim("C9", "the hybrid is at least as good as the other two schemes on every fold",
          f"the hybrid minus the other scheme on the fold closest to failing, per-clip interval within the fold, "
          f"simultaneous over folds; non-inferiority margin {NONINFERIORITY_MARGIN:g} point",
          "results", "Fig. 4, no number"),
    Claim("C10", "frequency masks help more than time masks", "f = 2, t = 0 minus f = 0, t = 1 (cross-entropy)",
          "ablation", "Table I: f = 2, t = 0 vs f = 0, t = 1 (F = T = 32)", {"esc50": 91.6 - 90.35}),
    Claim("C11", "SoundCLR beats the published state of the art", "published accuracies", "results",
          "Table IV: SoundCLR vs the best single model of the literature",
          {ds: _SINGLE[ds] - v for ds, v in _best_single_model().items()}),
]}
CLAIM_IDS = list(CLAIMS)        # the paper's, in the ledger's order


def register(claim: Claim, *, replace: bool = False) -> Claim:
    """Add a claim of your own to the ledger (a plugin file calls this at import): its ``compute`` function
    (the measurement) adds its row. Its id must be new (letters, digits, ``_`` or ``-``) unless ``replace``; the paper's
    claims cannot be replaced."""
    if not isinstance(claim, Claim):
        raise TypeError(f"register() takes a soundclr.analysis.claims.Claim, not {type(claim).__name__}")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", claim.id):
        raise ValueError(f"claim id {claim.id!r} is not valid: use letters, digits, _ and -, starting with a letter")
    if not callable(claim.compute):
        raise TypeError(f"claim {claim.id!r}: compute must be a function compute(evidence, claim_id) that adds the "
                        "claim's row (e.g. soundclr.analysis.rows.beats('my_scheme', 'ce'))")
    old = CLAIMS.get(claim.id)
    if old is not None and old != claim and (claim.id in CLAIM_IDS or not replace):
        raise ValueError(f"claim id {claim.id!r} is taken" + (" by the paper's claims" if claim.id in CLAIM_IDS else
                                                              ": choose another id or pass replace=True"))
    CLAIMS[claim.id] = claim
    return claim


def claim_ids() -> list[str]:
    """Every claim of the ledger: the paper's (C1 to C11), then those registered by plugins, in order."""
    scheme_names()          # loads the plugins the environment names: a worker's or a kernel's register their claims too
    return list(CLAIMS)


def own_claims(page: str | None = None) -> list[str]:
    """The claims registered by plugins (not the paper's), or those whose evidence is on ``page``."""
    return [c for c in claim_ids() if c not in CLAIM_IDS and (page is None or CLAIMS[c].evidence == page)]

# C11 in words: the numbers of Table IV it would compare.
LITERATURE_CLAIM = ("ESC-50: SoundCLR 93.4 % vs DenseNet (Palanisamy et al.) 91.52 % (single models), 93.6 % vs "
                    "DenseNet-Ensemble (Palanisamy et al.) 92.89 % (ensembles); ESC-10: 99.75 % vs ESResNet-Attention "
                    "(Guzhov et al.) 97.0 %; UrbanSound8K: 86.49 % vs ESResNet-Attention (Guzhov et al.) 85.42 %, "
                    "88.01 % vs DenseNet-Ensemble (Palanisamy et al.) 87.42 %")
