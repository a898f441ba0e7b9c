"""Backbone weights: ImageNet from the torch hub cache, a user's state dict, and fitting them to a model.

ImageNet weights come from torchvision's weights API, version ``IMAGENET1K_V1`` for every ResNet:
the released code used ``pretrained=True``, which is V1. They are read from the torch hub cache
(``torch.hub.get_dir()/checkpoints/``); when the file is not there it is downloaded with a short
timeout, and a machine with no internet gets a :class:`WeightsError` at once that names the file,
the URL and the folder to drop it in. A 1-channel model takes 3-channel weights by
``mono_first_conv`` (:func:`_fit_first_conv`).
"""
from __future__ import annotations

import os
import socket
import urllib.error
from pathlib import Path

import torch
import torch.nn as nn
import torchvision

# The key of the first convolution, shared by torchvision's ResNets and TinyResNet.
FIRST_CONV = "conv1.weight"


class WeightsError(Exception):
    """Backbone weights that cannot be found, downloaded or loaded."""


def imagenet_weights(name: str):
    # V1 everywhere: the released code's `pretrained=True` meant IMAGENET1K_V1.
    enum = {"resnet18": torchvision.models.ResNet18_Weights,
            "resnet34": torchvision.models.ResNet34_Weights,
            "resnet50": torchvision.models.ResNet50_Weights}[name]
    return enum.IMAGENET1K_V1


def imagenet_cache_path(backbone: str) -> Path:
    """Where the ImageNet weights of ``backbone`` are looked for: ``torch.hub.get_dir()/checkpoints/<file>``."""
    url = imagenet_weights(backbone).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def download_file(url: str, dst: Path, timeout: float) -> None:
    """Download ``url`` to ``dst`` with torch's own downloader (a progress bar, a temporary file
    renamed on success, and torchvision's sha256 prefix checked); a stalled network gives up
    after ``timeout`` seconds."""
    # torchvision names its files <name>-<first hex digits of the sha256>.pth
    prefix = dst.stem.rsplit("-", 1)[-1]
    dst.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        torch.hub.download_url_to_file(url, str(dst), hash_prefix=prefix, progress=True)
    except RuntimeError as e:
        if "hash" not in str(e).lower():
            raise
        raise WeightsError(f"downloaded {url} but its sha256 does not start with {prefix}: the download is corrupt; "
                           f"try again or put the file in {dst.parent} by hand.") from None
    finally:
        socket.setdefaulttimeout(previous)


def load_imagenet(backbone: str, timeout: float) -> dict[str, torch.Tensor]:
    weights = imagenet_weights(backbone)
    path = imagenet_cache_path(backbone)
    if not path.exists():
        try:
            download_file(weights.url, path, timeout)
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            raise WeightsError(
                f"ImageNet weights for {backbone} ({weights}) are not in the torch hub cache and could not be "
                f"downloaded ({e}). Download {weights.url} on a machine with internet and put the file "
                f"{path.name} in {path.parent} (that is torch.hub.get_dir()/checkpoints; set TORCH_HOME to "
                f"move it), or set weights='none' or weights=<path to a state dict>."
            ) from None
    return read_state_dict(path)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated download, a pickle of something else, ...
        raise WeightsError(f"could not read weights file {path} as a PyTorch state dict: {e}. "
                           "Expected a file written by torch.save(module.state_dict(), path).") from None
    # Unwrap training checkpoints such as {"model": state_dict, "optimizer": ...}.
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"weights file {path} does not hold a state dict (a dict of tensors): found {type(obj).__name__}.")
    # nn.DataParallel (the released code) prefixes every key with "module."
    return {k.removeprefix("module."): v for k, v in obj.items()}


MONO_FIRST_CONV = ("fresh", "sum", "mean")


def _fit_first_conv(state: dict[str, torch.Tensor], key: str, want: int, source: str, how: str = "fresh") -> bool:
    """Make the first convolution's input channels match the model (in place).

    For a 1-channel model and 3-channel weights, ``how`` says what the first convolution becomes:

    - ``"fresh"``: a new, randomly initialised 1-channel convolution (the usual torchvision
      way of changing ``in_channels``; the released code's history holds such a line); the
      rest of the network keeps its weights. Returns True: the key is then left out.
    - ``"sum"``: the RGB filters summed. A grey log-mel copied to 3 channels meets
      W_r x + W_g x + W_b x = (W_r + W_g + W_b) x, so the 1-channel model then computes
      exactly the 3-channel function at initialisation.
    - ``"mean"``: the RGB filters averaged: the same function scaled by 1/3 before the
      first BatchNorm.
    """
    w = state.get(key)
    if w is None or w.dim() != 4 or w.shape[1] == want:
        return False
    if want != 1:
        raise WeightsError(f"{source} was saved for {w.shape[1]}-channel input but the model takes {want} channels "
                           f"(features.channels): set channels={w.shape[1]} or use other weights.")
    if how not in MONO_FIRST_CONV:
        raise ValueError(f"mono_first_conv={how!r} is not valid: choose one of {', '.join(MONO_FIRST_CONV)}")
    if how == "fresh":
        del state[key]
        return True
    state[key] = w.sum(dim=1, keepdim=True) if how == "sum" else w.mean(dim=1, keepdim=True)
    return False


def load_into(model: nn.Module, state: dict[str, torch.Tensor], backbone: str, source: str,
               mono_first_conv: str = "fresh") -> None:
    in_channels = model.encoder.conv1.in_channels
    if any(k.startswith("encoder.") for k in state):
        target, first = model, "encoder." + FIRST_CONV
    else:
        # A torchvision-style backbone state dict; its ImageNet classifier is not ours.
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        target, first = model.encoder, FIRST_CONV
    fresh = _fit_first_conv(state, first, in_channels, source, mono_first_conv)
    own = target.state_dict()
    missing = sorted(set(own) - set(state) - ({first} if fresh else set()))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        what = "SoundCLRModel" if target is model else f"{backbone} backbone"
        details = "; ".join(f"{label} ({len(keys)}): {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
                            for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                                ("shape mismatches", wrong)) if keys)
        raise WeightsError(
            f"{source} does not match a {what}: {details}. Expected a state dict of the {backbone} backbone "
            "(torch.save(model.encoder.state_dict(), path), or torchvision's own file) or of a whole SoundCLRModel "
            "with the same backbone, number of classes and projection_dim; check model.backbone and the file."
        )
    target.load_state_dict(state, strict=not fresh)   # "fresh": the first convolution keeps its initialisation
