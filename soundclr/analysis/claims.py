"""The paper's claims as data: one :class:`Claim` record per claim (C1 to C11), with the paper's
effect and its source, what is measured, and the page that holds the evidence.

Nothing here computes: :mod:`soundclr.analysis.evidence` tests each claim on the runs and
:mod:`soundclr.analysis.ledger` puts the rows together.
"""
from __future__ import annotations

NEAR_FINAL = 0.95         # C8: the target is 95 % of the lower of the two sides' final accuracies


PAPER_NOISE_LEVELS = (1e-4, 5e-4, 1e-3)   # C6: the paper's noise levels (Fig. 5), the clean clip being 0


NOISE_DRAWS = 3           # C6: noise draws averaged per level


VERDICTS = ("supported", "contradicted", "inconclusive", "not testable")


# -- the claims ------------------------------------------------------------------------------------
# The paper's own effect for each claim, in its unit, per dataset (from its Tables I-IV and the text
# of Sec. IV-B); none where the paper gives a figure or a sentence, not a number.
PAPER_EFFECTS = {
    "C1": {"esc50": 92.86 - 91.85, "esc10": 99.6 - 99.0, "us8k": 85.78 - 85.28},
    "C2": {"esc50": 92.86 - 91.98, "esc10": 99.6 - 99.25, "us8k": 85.78 - 84.69},
    "C3": {"esc50": 93.2 - 92.8, "esc10": 99.75 - 99.5, "us8k": 85.96 - 85.46},
    "C4a": {"esc50": 1.6},
    "C4b": {"esc50": 1.45},
    "C5a": {"esc50": 4.0},
    "C5b": {"esc50": 84.6 - 74.6},
    "C6a": {}, "C6b": {},
    "C7a": {"esc50": 93.6 - 92.86, "esc10": 99.75 - 99.6, "us8k": 88.01 - 85.78},
    "C7b": {"esc50": 93.6 - 92.64, "us8k": 88.01 - 87.35},
    "C8a": {}, "C8b": {}, "C8c": {},
    "C9": {},
    "C10": {"esc50": 91.6 - 90.35},
    "C11": {"esc50": 93.4 - 91.52, "esc10": 99.75 - 97.0, "us8k": 86.49 - 85.42},
}


PAPER_SOURCE = {
    "C1": "Table III, mean of 5", "C2": "Table III, mean of 5", "C3": "Table II, vs the next best alpha",
    "C4a": "Fig. 3 text", "C4b": "Fig. 3 text", "C5a": "Fig. 3 text: more than 4 points", "C5b": "Fig. 3 text",
    "C6a": "Fig. 5, no number", "C6b": "Fig. 5, no number", "C7a": "Table IV vs Table III",
    "C7b": "Table IV: SoundCLR-Ensemble vs ResNet-Ensemble [23], a ResNet-50 ensemble trained with cross-entropy",
    "C8a": "Sec. IV-D, no number", "C8b": "Sec. IV-D, no number", "C8c": "Sec. III-C, no number",
    "C9": "Fig. 4, no number", "C10": "Table I: f = 2, t = 0 vs f = 0, t = 1 (F = T = 32)",
    "C11": "Table IV: SoundCLR vs the best single model of the literature",
}


CLAIMS = {
    "C1": "the hybrid loss beats cross-entropy",
    "C2": "the hybrid loss beats two-stage supervised contrastive learning",
    "C3": "alpha = 0.5 is the best weight of the hybrid loss",
    "C4a": "wave augmentation helps",
    "C4b": "spectrogram masks help, on top of wave augmentation",
    "C5a": "three input channels beat one (with ImageNet weights)",
    "C5b": "ImageNet weights beat random initialisation",
    "C6a": "SupCon-trained models lose less accuracy under white noise than cross-entropy ones",
    "C6b": "SupCon-trained models lose less accuracy under white noise than hybrid ones",
    "C7a": "an ensemble of hybrid models beats a single one",
    "C7b": "an ensemble of hybrid models beats an ensemble of cross-entropy models",
    "C8a": "the hybrid trains in fewer epochs than the two-stage scheme",
    "C8b": "the hybrid trains in less time than the two-stage scheme",
    "C8c": "the hybrid converges faster than cross-entropy (the same schedule)",
    "C9": "the hybrid is at least as good as the other two schemes on every fold",
    "C10": "frequency masks help more than time masks",
    "C11": "SoundCLR beats the published state of the art",
}


EVIDENCE = {"C1": "results", "C2": "results", "C3": "results", "C4a": "ablation", "C4b": "ablation",
            "C5a": "ablation", "C5b": "ablation", "C6a": "robustness", "C6b": "robustness", "C7a": "results",
            "C7b": "results", "C8a": "training-hybrid", "C8b": "training-hybrid", "C8c": "training-hybrid",
            "C9": "results", "C10": "ablation", "C11": "results"}


UNIT = {"C8a": "epochs", "C8b": "seconds", "C8c": "epochs"}


_NOISE = ", ".join(f"{s:g}" for s in PAPER_NOISE_LEVELS)


MEASURE = {
    "C1": "hybrid minus cross-entropy, final-epoch accuracy",
    "C2": "hybrid minus two-stage SupCon, final-epoch accuracy",
    "C3": "alpha = 0.5 minus the best other alpha (simultaneous over the other alphas)",
    "C4a": "with minus without wave augmentation (cross-entropy)",
    "C4b": "with minus without spectrogram masks, both with wave augmentation (cross-entropy)",
    "C5a": "3 minus 1 input channels, ImageNet weights",
    "C5b": "ImageNet minus random initialisation, 1 channel",
    "C6a": f"mean accuracy lost at noise std {_NOISE} ({NOISE_DRAWS} noise draws): cross-entropy's minus SupCon's",
    "C6b": f"mean accuracy lost at noise std {_NOISE} ({NOISE_DRAWS} noise draws): the hybrid's minus SupCon's",
    "C7a": "ensemble of the fold's hybrid models minus their mean single accuracy",
    "C7b": "ensemble of the fold's hybrid models minus the ensemble of its cross-entropy models",
    "C8a": f"epochs to {100 * NEAR_FINAL:g} % of the lower final accuracy: the two-stage scheme's (stage 1 + 2) minus the hybrid's",
    "C8b": f"training seconds to {100 * NEAR_FINAL:g} % of the lower final accuracy: the two-stage scheme's minus the hybrid's",
    "C8c": f"epochs to {100 * NEAR_FINAL:g} % of the lower final accuracy: cross-entropy's minus the hybrid's, same schedule",
    "C9": "the worst fold's hybrid minus the other scheme, per-clip interval within the fold, simultaneous over folds",
    "C10": "f = 2, t = 0 minus f = 0, t = 1 (cross-entropy)",
    "C11": "published accuracies",
}


CLAIM_IDS = list(CLAIMS)


PROTOCOLS = {"final": "acc", "best_test": "acc_best_test", "best_val": "acc_best_val"}


PROTOCOL_LABEL = {"final": "final epoch (ours)", "best_test": "best epoch on the test fold (the paper's)",
                  "best_val": "best epoch on a validation fold"}


LITERATURE = ("ESC-50: SoundCLR 93.4 % vs DenseNet [23] 91.52 % (single models), 93.6 % vs DenseNet-Ensemble [23] "
              "92.89 % (ensembles); ESC-10: 99.75 % vs ESResNet-Attention [20] 97.0 %; UrbanSound8K: 86.49 % vs "
              "ESResNet-Attention [20] 85.42 %, 88.01 % vs DenseNet-Ensemble [23] 87.42 %")


# -- what a decisive test costs ---------------------------------------------------------------------
PAPER_ACCURACY = {   # Table III, mean of 5: (cross-entropy, SupCon, hybrid)
    "esc50": {"ce": 91.85, "supcon": 91.98, "hybrid": 92.86},
    "esc10": {"ce": 99.0, "supcon": 99.25, "hybrid": 99.6},
    "us8k": {"ce": 85.28, "supcon": 84.69, "hybrid": 85.78},
}


POWER_TARGET = 0.80
