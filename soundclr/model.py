"""The representation network, the classifier and the projection head (paper Sec. III-B/C).

::

    x (batch, channels, mels, frames)
      └─ encoder f(·): ResNet, fc removed, global average pool ─► (batch, D)
           └─ L2-normalise per clip ─────────────────────────────► h  representation (batch, D)
                ├─ classifier  Linear(D, n_classes) ─────────────► logits (batch, n_classes)
                └─ projection  Linear(D, projection_dim), L2 ────► z  projection (batch, projection_dim)

The paper uses ResNet-50 (D = 2048) with ImageNet weights and a 64-d linear projection with no
non-linearity; both heads read the *normalised* representation. ``tiny`` is a small
ResNet-style CNN (D = 128) for CPU work and tests. The weights come from :mod:`soundclr.weights`.

Example::

    cfg = soundclr.preset("quick")
    model = build_model(cfg, n_classes=50)
    out = model(torch.randn(8, 1, 32, 41))
    out.representation.shape, out.projection.shape, out.logits.shape
    # (8, 128), (8, 64), (8, 50)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from .config import BACKBONES, NORMALIZE
from .weights import (
    WeightsError,
    load_imagenet,
    load_into,
    read_state_dict,
    imagenet_cache_path,
)

# A small floor under the norm: pooled post-ReLU features are never this small
# unless they are all zero, where it keeps the gradient bounded.
NORM_EPS = 1e-6


class ModelOutput(NamedTuple):
    representation: torch.Tensor  # h: (batch, D), L2-normalised per clip, float32
    projection: torch.Tensor      # z: (batch, projection_dim), L2-normalised, float32
    logits: torch.Tensor          # (batch, n_classes)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a skip connection (He et al.'s basic block).

    Args:
        in_width, out_width: channels in and out.
        stride: 2 halves the mels and frames; the skip then goes through a 1x1 convolution.

    Shapes: ``(batch, in_width, H, W) -> (batch, out_width, ceil(H/stride), ceil(W/stride))``.
    """

    def __init__(self, in_width: int, out_width: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_width, out_width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_width)
        self.conv2 = nn.Conv2d(out_width, out_width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_width)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_width != out_width:
            self.shortcut = nn.Sequential(nn.Conv2d(in_width, out_width, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


TINY_DESIGNS = ("pooled-centred", "plain")


class TinyResNet(nn.Module):
    """A narrow four-stage ResNet for CPU runs and tests.

    ``design="pooled-centred"`` (the default): a stride-2 3x3 stem and a stride-2 max-pool
    (as ResNet's stem), one stride-2 residual block per stage with widths ``widths``, a
    global average pool, and a BatchNorm of the pooled features. ``design="plain"``: the
    first tiny network of this project, without the max-pool and the BatchNorm.

    Why the two differences. The max-pool quarters the cost of every block (a 1x32x79
    log-mel ends as 1x2 before pooling, as ResNet-50's 128x431 ends as 4x14): about 6
    MFLOPs per clip, 1/100 of ResNet-18's. The BatchNorm centres the representation before
    it is L2-normalised: the pooled post-ReLU features of a 128-d network all lie in one
    orthant, their unit vectors are close to each other, and a linear classifier on them
    needs large weights, which Adam grows only step by step; centred, the classes spread
    over the sphere and a short training run learns several points more (the book's tuning
    page measures both). ResNet-50's 2048-d features, trained for 800 epochs, do not need it,
    and the ResNets here follow the paper. No ImageNet weights exist for this network.

    Args:
        in_channels: input channels (1: the log-mel itself, 3: copied to 3).
        widths: channels of the four stages; the last one is the representation size D.
        design: ``"pooled-centred"`` or ``"plain"`` (setting ``tiny_design``).

    Shapes: ``(batch, in_channels, mels, frames) -> (batch, widths[-1])``.
    """

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = (16, 32, 64, 128),
                 design: str = "pooled-centred"):
        super().__init__()
        if design not in TINY_DESIGNS:
            raise ValueError(f"tiny_design={design!r} is not valid: choose one of {', '.join(TINY_DESIGNS)}")
        self.design = design
        pooled = design == "pooled-centred"
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.pool = nn.MaxPool2d(3, stride=2, padding=1) if pooled else nn.Identity()
        stages, width = [], widths[0]
        for out in widths:
            stages.append(ResidualBlock(width, out, stride=2))
            width = out
        self.stages = nn.Sequential(*stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.centre = nn.BatchNorm1d(width) if pooled else nn.Identity()
        self.out_features = width
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        x = self.stages(x)
        return self.centre(torch.flatten(self.avgpool(x), 1))


class SoundCLRModel(nn.Module):
    """Encoder f(·), normalised representation h, classifier and projection head g(·).

    Args:
        encoder: maps ``(batch, channels, mels, frames)`` to pooled, un-normalised
            features ``(batch, representation_dim)``.
        representation_dim: D, the encoder's output width (2048 for ResNet-50).
        n_classes: outputs of the classifier.
        projection_dim: D_g, outputs of the projection head (64 in the paper).
        normalize: ``"sample"`` normalises h and z per clip (the paper's text and
            the released code after its 2023 fix); ``"batch"`` normalises each
            feature across the batch, as the released code did when the
            paper's numbers were made (``F.normalize(h, dim=0)``), so a clip's
            h then depends on the rest of its batch.

    ``forward`` returns a :class:`ModelOutput`; ``represent`` returns h only.
    h and z are computed in float32 even under autocast, so their norms are exact.
    """

    def __init__(self, encoder: nn.Module, representation_dim: int, n_classes: int,
                 projection_dim: int = 64, normalize: str = "sample"):
        super().__init__()
        if normalize not in NORMALIZE:
            raise ValueError(f"normalize={normalize!r} is not valid: choose one of {', '.join(NORMALIZE)}")
        self.encoder = encoder
        self.representation_dim = representation_dim
        self.normalize = normalize
        self.classifier = nn.Linear(representation_dim, n_classes)
        self.projection = nn.Linear(representation_dim, projection_dim)

    def _unit(self, v: torch.Tensor) -> torch.Tensor:
        dim = 1 if self.normalize == "sample" else 0
        # float32 also under autocast: bf16 would round every component of h by up to 0.4 %.
        return F.normalize(v.float(), p=2.0, dim=dim, eps=NORM_EPS)

    def represent(self, x: torch.Tensor) -> torch.Tensor:
        """h: ``(batch, channels, mels, frames) -> (batch, representation_dim)``, unit norm."""
        return self._unit(self.encoder(x))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """``x`` ``(batch, channels, mels, frames)`` -> ModelOutput(h, z, logits)."""
        h = self.represent(x)
        z = self._unit(self.projection(h))
        return ModelOutput(representation=h, projection=z, logits=self.classifier(h))


def _torchvision_backbone(name: str, in_channels: int) -> tuple[nn.Module, int]:
    net = getattr(torchvision.models, name)(weights=None)
    dim = net.fc.in_features
    net.fc = nn.Identity()  # keep avgpool + flatten: the encoder returns (batch, D)
    if in_channels != 3:
        old = net.conv1
        net.conv1 = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
    return net, dim


def build_model(cfg: Any, n_classes: int, *, in_channels: int | None = None,
                normalize: str | None = None, download_timeout: float = 10.0) -> SoundCLRModel:
    """Build the backbone, the heads, and load the weights that ``cfg.model.weights`` names.

    Args:
        cfg: a :class:`soundclr.config.Config`; reads ``cfg.model.backbone``
            (resnet18, resnet34, resnet50, tiny), ``cfg.model.weights``
            ("imagenet", "none", or a path), ``cfg.model.projection_dim`` and
            ``cfg.features.channels``.
        n_classes: outputs of the classifier.
        in_channels: input channels; default ``cfg.features.channels``.
        normalize: ``"sample"`` or ``"batch"`` (the released code's bug, see
            :class:`SoundCLRModel`); default ``cfg.model.normalize`` ("sample").
        download_timeout: seconds a stalled ImageNet download may wait on the network.

    Weights:
        - ``"imagenet"``: torchvision's IMAGENET1K_V1, from the torch hub cache or
          downloaded to it. With 1 input channel, ``cfg.model.mono_first_conv``
          says what the first convolution becomes: ``"fresh"`` (a new random
          1-channel convolution, the rest pretrained), ``"sum"`` (the RGB
          filters summed: exactly the 3-channel function for a grey input) or
          ``"mean"``; see ``_fit_first_conv``.
        - ``"none"``: random initialisation.
        - a path: ``torch.save`` of the backbone's state dict (torchvision's key
          names; an ``fc.*`` head is ignored) or of a whole SoundCLRModel. The
          same 1-channel rule applies.

    Raises:
        WeightsError: no ImageNet weights for ``tiny``; offline with no cached
            file; a missing file; keys or shapes that do not match.
    """
    backbone, weights = cfg.model.backbone, str(cfg.model.weights)
    in_channels = cfg.features.channels if in_channels is None else in_channels
    if normalize is None:
        normalize = getattr(cfg.model, "normalize", "sample")
    if backbone not in BACKBONES:
        raise ValueError(f"model.backbone={backbone!r} is not valid: choose one of {', '.join(BACKBONES)}")
    if in_channels < 1:
        raise ValueError(f"in_channels={in_channels} is not valid: it must be at least 1")

    # Weights first: a missing file should fail before minutes of model building on a slow machine.
    state: dict[str, torch.Tensor] | None = None
    if weights == "imagenet":
        if backbone == "tiny":
            raise WeightsError("there are no ImageNet weights for the 'tiny' backbone: set weights='none' "
                               "(or a path to a state dict), or choose backbone resnet18/resnet34/resnet50.")
        if in_channels not in (1, 3):
            raise WeightsError(f"ImageNet weights need 1 or 3 input channels, found in_channels={in_channels}.")
        state, source = load_imagenet(backbone, download_timeout), f"ImageNet weights {imagenet_cache_path(backbone)}"
    elif weights != "none":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"model.weights={weights!r}: no such file {path.resolve()}. Expected 'imagenet', "
                               "'none' or the path of a state dict saved with torch.save.")
        state, source = read_state_dict(path), f"weights file {path}"

    if backbone == "tiny":
        encoder: nn.Module = TinyResNet(in_channels, design=getattr(cfg.model, "tiny_design", "pooled-centred"))
        dim = encoder.out_features
    else:
        encoder, dim = _torchvision_backbone(backbone, in_channels)
    model = SoundCLRModel(encoder, dim, n_classes, cfg.model.projection_dim, normalize=normalize)
    if state is not None:
        load_into(model, state, backbone, source, getattr(cfg.model, "mono_first_conv", "fresh"))
    return model
