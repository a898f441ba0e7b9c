"""Classify any audio file a user has with a finished run's final model."""
from __future__ import annotations

from pathlib import Path

import torch

from .store import load_config


def predict_file(path: str | Path, checkpoint: str | Path, *, top: int = 5, device: str = "auto") -> list[tuple[str, float]]:
    """The ``top`` most probable classes of the clip at ``path`` (any rate, mono or stereo).

    ``checkpoint`` is a finished run folder or its ``model.pt``. The clip goes
    through the deterministic evaluation pipeline (trim, centred pad/crop, log-mel).
    """
    from .augment import Pipeline
    from .data import read_audio
    from .experiment import load_model
    from .train import resolve_device

    run = Path(checkpoint)
    if run.name == "model.pt":
        run = run.parent
    if not (run / "model.pt").exists():
        raise FileNotFoundError(f"no model at {run / 'model.pt'}: --checkpoint must be a finished run folder "
                                "(results/<dataset>/<experiment>/<run>/ holding model.pt)")
    if not Path(path).exists():
        raise FileNotFoundError(f"audio file {path} not found")
    cfg = load_config(run).resolved()
    dev = resolve_device(device)
    model = load_model(run, dev)
    names = torch.load(run / "model.pt", map_location="cpu", weights_only=False)["class_names"]
    wave = read_audio(path, cfg.data.sample_rate)
    pipeline = Pipeline(cfg.features, cfg.augment, cfg.data.sample_rate, cfg.data.clip_samples).to(dev).eval()
    with torch.no_grad():
        x = pipeline(wave[None].to(dev), torch.tensor([len(wave)], device=dev))
        probs = model(x).logits.float().softmax(-1)[0].cpu()
    values, idx = probs.topk(min(top, len(names)))
    return [(names[i], v) for i, v in zip(idx.tolist(), values.tolist())]
