"""What is done with a finished run: load its model, score it under white noise (Fig. 5), read its
embeddings (UMAPs), classify a sound file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from ..audio.io import read_audio
from ..audio.pipeline import Pipeline
from ..data.bank import load_bank
from ..files import atomic_write_json, read_json
from ..model import build_model
from ..train.evaluation import eval_batch_size, evaluate
from ..train.record import load_config
from ..train.runtime import memory_format_for, resolve_device, uses_bf16
from ..train.state import check_bank


# -- Fig. 5: robustness to white noise ----------------------------------------------------------
def noise_accuracy(run: Path | str, stds: Sequence[float] = (0.0, 1e-4, 5e-4, 1e-3), *, bank=None,
                   device: str = "auto", seed: int = 0) -> dict[float, float]:
    """Accuracy of a finished run's final model on its test fold with white Gaussian
    noise of each standard deviation added to each test clip after its silence trim and
    pad/crop (so that only the noise differs from the clean clip), evaluated exactly as
    the run's final epoch was (same pipeline, batches and precision: std 0 gives the run's
    final accuracy). ``seed`` draws the noise. Cached in ``noise.json``."""
    acc = noise_accuracies(run, stds, (seed,), bank=bank, device=device)
    return {s: acc[(s, seed)] for s in stds}


def noise_accuracies(run: Path | str, stds: Sequence[float], seeds: Sequence[int], *, bank=None,
                     device: str = "auto") -> dict[tuple[float, int], float]:
    """:func:`noise_accuracy` for every (std, noise seed) pair, the model and data loaded once."""

    run = Path(run)
    cache_path = run / "noise.json"
    try:
        cache = read_json(cache_path) if cache_path.exists() else {}
    except ValueError:       # a damaged cache is only a cache: compute it again
        cache = {}
    def key(s: float, seed: int) -> str:
        return f"{s:g}:{seed if s else 0}"      # without noise the draw does not matter
    missing = list(dict.fromkeys((s, seed if s else 0) for seed in seeds for s in stds if key(s, seed) not in cache))
    if missing:
        cfg = load_config(run).override(device=device).resolved()
        dev = resolve_device(device)
        model = load_model(run, dev)
        bank = bank if bank is not None else load_bank(cfg, progress=False)
        check_bank(bank, cfg)
        pipeline = Pipeline.from_config(cfg).to(dev)
        test = bank.split(cfg.run.test_fold).test
        layout = memory_format_for(dev, cfg.run.compile)
        model = model.to(memory_format=layout)                  # as in training: the same kernels, the same numbers
        if dev.type == "cuda":
            bank = bank.to(dev)
        for s, seed in missing:
            res = evaluate(model, pipeline, bank, test, dev, noise_std=s, noise_seed=seed, outputs=False,
                           batch_size=eval_batch_size(cfg), autocast=uses_bf16(cfg, dev), memory_format=layout)
            cache[key(s, seed)] = res["accuracy"]
        atomic_write_json(cache_path, cache)
    return {(s, seed): cache[key(s, seed)] for seed in seeds for s in stds}


# -- models and embeddings ------------------------------------------------------------------------
def load_model(run: Path | str, device: str | torch.device = "cpu"):
    """The final model of a finished run, in eval mode."""

    run = Path(run)
    path = run / "model.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: the run in {run} has not finished (train it with `soundclr train`) "
                                "or the folder is not a soundclr run")
    cfg = load_config(run).override(weights="none")  # the saved state dict holds every weight
    blob = torch.load(path, map_location=device, weights_only=False)
    model = build_model(cfg, blob["n_classes"])
    model.load_state_dict(blob["state_dict"])
    return model.to(device).eval()


def embeddings(run: Path | str) -> dict[str, torch.Tensor]:
    """The final model's test-fold ``representation`` (h), ``projection`` (z), ``labels``
    and ``probs``, saved at the end of training."""
    return torch.load(Path(run) / "outputs.pt", weights_only=False)


def predict_file(path: str | Path, checkpoint: str | Path, *, top: int = 5, device: str = "auto") -> list[tuple[str, float]]:
    """The ``top`` most probable classes of the clip at ``path`` (any rate, mono or stereo).

    ``checkpoint`` is a finished run folder or its ``model.pt``. The clip goes
    through the deterministic evaluation pipeline (trim, centred pad/crop, log-mel).
    """

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
    pipeline = Pipeline.from_config(cfg).to(dev).eval()
    with torch.no_grad():
        x = pipeline(wave[None].to(dev), torch.tensor([len(wave)], device=dev))
        probs = model(x).logits.float().softmax(-1)[0].cpu()
    values, idx = probs.topk(min(top, len(names)))
    return [(names[i], v) for i, v in zip(idx.tolist(), values.tolist())]


def ensemble_accuracy(runs) -> float:
    """The accuracy (a fraction) of the mean softmax output of ``runs`` (run folders: one fold's models)
    on their test fold, from each run's saved ``outputs.pt``."""
    outs = [torch.load(Path(r) / "outputs.pt", weights_only=False) for r in runs]
    probs = torch.stack([o["probs"] for o in outs]).mean(0)
    return (probs.argmax(-1) == outs[0]["labels"]).float().mean().item()


def clip_correctness(run: Path | str):
    """Per test clip of a finished run, in the order of the clips' dataset indices: 1.0 where its final
    model's prediction is right, else 0.0 (a numpy array, from the run's saved ``outputs.pt``)."""
    o = torch.load(Path(run) / "outputs.pt", weights_only=False)
    order = torch.argsort(o["indices"]) if "indices" in o else torch.arange(len(o["labels"]))
    return (o["probs"].argmax(-1) == o["labels"])[order].float().numpy()
