"""What each notebook runs, per preset and size: one place, so every notebook agrees.

The notebooks take a handful of papermill parameters (dataset, preset, size,
device, results folder, ...) and ask ``make_plan`` which folds, seeds,
sweep values and variants to run. The ``paper`` preset runs the paper's
grids in full; ``quick`` (a 2-core CPU) and ``tiny`` (tests) shrink the
expensive sweeps, and ``Plan.reductions`` says so in plain words for the page.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import Config, preset

PAPER_ALPHAS = (0.01, 0.25, 0.5, 0.75, 0.99)
PAPER_NOISE = (0.0, 1e-4, 5e-4, 1e-3)
PAPER_MASK_PANELS = ((16, 32), (32, 32), (32, 64))   # (F, T) of Table I's three panels
PAPER_MASK_COUNTS = (0, 1, 2, 3)                     # f, t in 0..3

NO_WAVE_AUG = dict(trim="none", scale=False, random_crop=False)
NO_SPEC_AUG = dict(freq_masks=0, time_masks=0)


@dataclass
class Plan:
    config: Config
    size: str
    folds: list[int]
    seeds: list[int]
    alphas: list[float]
    alpha_folds: list[int]
    mask_panels: list[tuple[int, int]]
    freq_mask_counts: list[int]
    time_mask_counts: list[int]
    ablation: dict[str, dict[str, Any]]
    ablation_skipped: dict[str, str]
    ablation_folds: list[int]
    noise_stds: list[float]
    ensemble_k: int
    results: str
    reductions: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """Markdown: what this page ran, and what it left out compared with the paper."""
        c = self.config
        lines = [f"**Settings**: dataset `{c.data.dataset}`, preset `{self.size}`, backbone `{c.model.backbone}` "
                 f"(weights `{c.model.weights}`), {c.optim.epochs} epochs, batch {c.optim.batch_size}, "
                 f"test folds {self.folds}, seeds {self.seeds}."]
        if self.reductions:
            lines.append("**Reduced from the paper on this preset**: " + "; ".join(self.reductions) + ".")
        return "\n\n".join(lines)


def imagenet_weights_available(backbone: str) -> bool:
    """Whether torchvision's ImageNet weights for ``backbone`` are already in the torch hub cache."""
    if backbone == "tiny":
        return False
    import os

    import torch
    from torchvision.models import get_model_weights
    url = get_model_weights(backbone)["IMAGENET1K_V1"].url
    return os.path.exists(os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url)))


def make_plan(dataset: str = "synthetic", preset_name: str = "quick", *, size: str | None = None,
              device: str = "auto", results: str = "results", data_root: str = "data",
              epochs: int | None = None, folds: list[int] | None = None, seeds: list[int] | None = None,
              **settings: Any) -> Plan:
    """The configuration and the grids a notebook runs.

    ``size``: ``None`` (the preset's own), or ``"tiny"`` (smallest settings, for tests).
    ``epochs``, ``folds``, ``seeds`` and any configuration setting override the plan.
    """
    cfg = preset(preset_name, dataset=dataset, device=device, data_root=data_root, **settings)
    size = size or preset_name
    if size not in ("paper", "quick", "tiny"):
        raise ValueError(f"size={size!r} is not valid: choose 'paper', 'quick' or 'tiny'")
    all_folds = list(range(1, cfg.n_folds + 1))
    reductions: list[str] = []
    if size == "paper":
        p = dict(folds=all_folds, seeds=[0, 1, 2, 3, 4], alphas=list(PAPER_ALPHAS), alpha_folds=all_folds,
                 mask_panels=list(PAPER_MASK_PANELS), freq_mask_counts=list(PAPER_MASK_COUNTS),
                 time_mask_counts=list(PAPER_MASK_COUNTS), ablation_folds=all_folds)
    elif size == "quick":
        p = dict(folds=[1, 2, 3], seeds=[0, 1], alphas=list(PAPER_ALPHAS), alpha_folds=[1],
                 mask_panels=[(cfg.augment.freq_mask_width, cfg.augment.time_mask_width)], freq_mask_counts=[0, 1, 2],
                 time_mask_counts=[0, 1], ablation_folds=[1])
        reductions += ["the main grid uses test folds 1-3 and 2 seeds (the paper: every fold, 5 seeds), so the "
                       "ensembles of Table IV have 2 members (the paper: 5)",
                       "the alpha sweep (Table II), the ablation (Fig. 3) and the masking grid (Table I) use test fold 1 and seed 0 only",
                       f"Table I has one panel (F={cfg.augment.freq_mask_width}, T={cfg.augment.time_mask_width}, scaled to "
                       f"{cfg.features.n_mels} mel bands), f in 0..2 and t in 0..1 (the paper: three panels, f and t in 0..3)"]
    else:  # tiny: for tests
        cfg = cfg.override(epochs=2, warmup_epochs=1, stage2_epochs=1, batch_size=32)
        p = dict(folds=[1], seeds=[0, 1], alphas=[0.5, 0.99], alpha_folds=[1],
                 mask_panels=[(cfg.augment.freq_mask_width, cfg.augment.time_mask_width)], freq_mask_counts=[0, 1],
                 time_mask_counts=[1], ablation_folds=[1])
        reductions += ["tiny test settings: 2 epochs, test fold 1, 2 seeds, 2 alpha values, f in 0..1, t = 1"]
    if epochs is not None:
        cfg = cfg.override(epochs=epochs)
    if folds is not None:
        p["folds"] = list(folds)
    if seeds is not None:
        p["seeds"] = list(seeds)

    # Fig. 3: transfer learning, 1 vs 3 channels, wave and spectrogram augmentation.
    none_aug = {**NO_WAVE_AUG, **NO_SPEC_AUG}
    ablation = {
        "random-1ch": dict(weights="none", channels=1, **none_aug),
        "random-3ch": dict(weights="none", channels=3, **none_aug),
        "imagenet-1ch": dict(weights="imagenet", channels=1, **none_aug),
        "imagenet-3ch": dict(weights="imagenet", channels=3, **none_aug),
        "imagenet-3ch-wave": dict(weights="imagenet", channels=3, **NO_SPEC_AUG),
        "imagenet-3ch-wave-spec": dict(weights="imagenet", channels=3),
    }
    skipped = {}
    if not imagenet_weights_available(cfg.model.backbone):
        why = (f"the `{cfg.model.backbone}` backbone has no ImageNet weights" if cfg.model.backbone == "tiny"
               else "ImageNet weights are not in the torch hub cache (offline)")
        for name in [n for n in ablation if n.startswith("imagenet")]:
            skipped[name] = why
            del ablation[name]
        ablation["random-3ch-wave"] = dict(weights="none", channels=3, **NO_SPEC_AUG)
        ablation["random-3ch-wave-spec"] = dict(weights="none", channels=3)
        reductions.append(f"Fig. 3's transfer-learning bars are left out because {why}; the augmentation "
                          "steps are shown on a randomly initialised backbone instead")
    return Plan(config=cfg, size=size, ablation=ablation, ablation_skipped=skipped, noise_stds=list(PAPER_NOISE),
                ensemble_k=len(p["seeds"]), results=results, reductions=reductions, **p)
