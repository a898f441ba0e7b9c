"""One configuration object for the whole pipeline.

A frozen dataclass tree (data, features, augment, model, optim, run) with
named presets:

- ``paper``: every value the paper states, and the released code's value
  wherever the paper is silent (the book's page *The paper, its code, and this
  reproduction*, ``book/differences.md``, lists each one): 44.1 kHz, 1024/512
  Hamming STFT, 128 mels, ResNet-50 with ImageNet weights, AdamW, 800 epochs, ...
- ``quick``: small enough for a 2-core CPU (8 kHz, 32 mels, a tiny
  backbone, 80 epochs for every scheme); used by ``make book`` on the synthetic dataset.

Every field name is unique across sections, so a flat override such as
``cfg.override(lr=1e-3, freq_masks=0)`` or a CLI flag ``--freq-masks 0`` maps
to exactly one field; an unknown name is an error that lists the valid ones.
Fields left as ``None`` take a per-dataset default when the configuration is
resolved (``Config.resolved()``), e.g. the learning rate (5e-4 for ESC,
1e-4 for US8K) and the clip length (5 s for ESC, 4 s for US8K).
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import re
from dataclasses import dataclass, field, fields, replace
from typing import Any

from . import datasets, schemes
from .losses import FORMS, NO_POSITIVE

# Allowed values of the settings whose code lives above this module (the model, the transforms) are defined here,
# once, and imported there; the losses' own (FORMS, NO_POSITIVE) are imported from soundclr.losses.
BACKBONES = ("resnet18", "resnet34", "resnet50", "tiny")
NORMALIZE = ("sample", "batch")
TRIM_RULES = ("zeros", "threshold", "none")
MASK_FILLS = ("zero", "min", "mean")

# The datasets' facts (folds, clip length, learning rate, layout, ...) live in their records (soundclr/datasets.py):
# a field left None takes its dataset's value there.


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "synthetic"         # esc50, esc10, us8k, synthetic (the embedded, offline default), or yours (soundclr/datasets.py)
    data_root: str = "data"            # each dataset lives in data_root/<name>/
    sample_rate: int = 44100           # every clip is resampled to this rate
    clip_seconds: float | None = None  # None: 5 s (ESC), 4 s (US8K), 2.5 s (synthetic)
    on_bad_file: str = "error"         # "error" or "skip" (skipped files are listed in a warning)
    synthetic_draw: int = 0            # the synthetic set's generator seed: 0 is the book's draw; the tuning study
                                       # draws its own (1) in data_root/synthetic-draw1/, so tuning never sees a test clip

    @property
    def clip_samples(self) -> int:
        seconds = self.clip_seconds if self.clip_seconds is not None else datasets.get(self.dataset).clip_seconds
        return int(round(seconds * self.sample_rate))


@dataclass(frozen=True)
class FeatureConfig:
    n_fft: int = 1024                  # STFT window length in samples (the paper: 1024)
    hop_length: int = 512              # STFT hop in samples (the paper: 50 % overlap)
    window: str = "hamming"            # paper: "hamming"; released code: "hann"
    n_mels: int = 128                  # mel bands
    top_db: float = 80.0               # dB floor below each clip's maximum
    stft_pad: str = "reflect"          # STFT centring pad: "reflect" (librosa < 0.9, the released code) or "constant" (zeros)
    amplitude_scale: float = 32768.0   # waves in [-1, 1] times this before the power (released code: 32768; moves the amin floor)
    channels: int = 3                  # 1, or the log-mel copied to 3 (ImageNet backbones)


@dataclass(frozen=True)
class AugmentConfig:
    trim: str = "zeros"                # "zeros" (released code), "threshold", "none"
    trim_db: float = 60.0              # threshold rule: dB below the clip's peak
    scale: bool = True                 # random scaling 1.25^U(-1, 1)
    scale_max: float = 1.25            # the largest scaling factor s (and 1/s the smallest)
    random_crop: bool = True           # random pad/crop offset in training (eval is centred)
    pad: str = "edge"                  # pad value: "edge" samples (released code; the paper is silent) or "zero"
    freq_masks: int = 2                # f: frequency masks per clip (Table I)
    freq_mask_width: int = 32          # F: the widest frequency mask, in mel bands
    time_masks: int = 1                # t: time masks per clip (Table I)
    time_mask_width: int = 32          # T: the widest time mask, in frames
    mask_fill: str = "zero"            # "zero" (paper: the loudest value!), "min", "mean"


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "resnet50"         # resnet18, resnet34, resnet50, tiny
    weights: str = "imagenet"          # "imagenet", "none", or a path to a state dict
    projection_dim: int = 64           # D_g: outputs of the linear projection head (the paper: 64)
    normalize: str = "sample"          # L2-normalise h and z per clip; "batch" = the released code's pre-2023 bug
    tiny_design: str = "pooled-centred"  # the tiny backbone: "pooled-centred" (max-pool stem, centred features) or "plain"
    mono_first_conv: str = "fresh"     # 3-channel weights into a 1-channel model: "fresh" first conv, or RGB filters' "sum" / "mean"


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = "adamw"           # "adam" (paper text) or "adamw" (released code)
    lr: float | None = None            # None: 5e-4 (ESC), 1e-4 (US8K)
    weight_decay: float = 1e-3         # AdamW's decoupled weight decay (released code: 1e-3)
    warmup_epochs: int = 10            # linear warm-up epochs: lr x (0.1 + 0.9 (e + 1) / W)
    gamma: float = 0.98                # exponential decay per epoch after warm-up
    epochs: int = 800                  # training epochs (stage 1 of the supcon scheme)
    batch_size: int = 128              # clips per batch (SupCon contrasts the clips of a batch)
    temperature: float = 0.05          # SupCon temperature
    alpha: float = 0.5                 # hybrid: alpha * SupCon + (1 - alpha) * CE
    supcon_form: str = "out"           # Khosla's L_out (released code) or "in" (Eq. 3 as typeset)
    no_positive: str = "exclude"       # anchors without a positive: "exclude" from the mean, or "zero" (released code)
    contrastive_stretch: float = 1.0   # the hybrid, and stage 1 of supcon, run k x epochs: warm-up x k, gamma^(1/k)
    stage2_epochs: int = 800           # supcon scheme, stage 2 (linear classifier)
    stage2_gamma: float = 0.995        # stage 2's decay per epoch after the same warm-up
    stage2_lr: float | None = None     # None: same as lr
    stage2_start: str = "best_test"    # stage 2 starts from stage 1's "final" epoch, or its lowest SupCon loss on the
                                       # test fold ("best_test": the released code) or on the validation fold ("best_val")


@dataclass(frozen=True)
class RunConfig:
    scheme: str = "hybrid"             # "ce", "supcon", "hybrid", or one a plugin registered (soundclr/schemes.py)
    test_fold: int = 1                 # the held-out fold scored (the grid sets it from --folds)
    val_fold: int | None = None        # a validation fold held out of training (3/1/1 protocol)
    seed: int = 0                      # initialisation, clip order and augmentation draws
    device: str = "auto"               # "auto", "cpu", "cuda", "cuda:1", ...
    precision: str = "auto"            # "auto" (bf16 autocast on CUDA, fp32 on CPU), "bf16", "fp32"
    compile: bool = False              # torch.compile the model (same results; faster on some GPUs; measure first)
    lease_stale_seconds: float = 900.0 # a worker's lease on a run with no heartbeat for this long is taken over
    checkpoint_every: int = 1          # epochs between resumable checkpoints ...
    checkpoint_seconds: float = 60.0   # ... and at least this many seconds (a ResNet-50 checkpoint is ~300 MB)


SECTIONS = {"data": DataConfig, "features": FeatureConfig, "augment": AugmentConfig,
            "model": ModelConfig, "optim": OptimConfig, "run": RunConfig}

# Fields that change how a run executes but not what it computes: left out of the run's identity.
EXECUTION_FIELDS = {"data_root", "device", "checkpoint_every", "checkpoint_seconds", "on_bad_file", "compile",
                    "lease_stale_seconds"}


def _field_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for section, cls in SECTIONS.items():
        for f in fields(cls):
            assert f.name not in index, f"duplicate field name {f.name}"
            index[f.name] = section
    return index


FIELD_SECTION = _field_index()


# Settings renamed since runs were first written: the old name in a config.json is read as the new one.
RENAMED = {"claim_stale_seconds": "lease_stale_seconds"}


class ConfigError(ValueError):
    """A setting that does not exist or has an invalid value."""


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    # -- overrides ---------------------------------------------------------
    def override(self, **settings: Any) -> "Config":
        """Return a copy with flat settings changed: ``cfg.override(lr=1e-3, scheme="ce")``.

        Dotted names (``"optim.lr"``) are accepted too. Unknown names raise a
        ConfigError listing the valid ones; values are converted to the
        field's type (so strings from a command line work).
        """
        by_section: dict[str, dict[str, Any]] = {}
        for name, value in settings.items():
            key = name.replace("-", "_")
            if "." in key:
                section, key = key.split(".", 1)
                if section not in SECTIONS or FIELD_SECTION.get(key) != section:
                    raise ConfigError(_unknown(name))
            if key not in FIELD_SECTION:
                raise ConfigError(_unknown(name))
            section = FIELD_SECTION[key]
            by_section.setdefault(section, {})[key] = _coerce(section, key, value)
        cfg = self
        for section, values in by_section.items():
            cfg = replace(cfg, **{section: replace(getattr(cfg, section), **values)})
        cfg.validate()
        return cfg

    def get(self, name: str) -> Any:
        key = name.replace("-", "_").split(".")[-1]
        if key not in FIELD_SECTION:
            raise ConfigError(_unknown(name))
        return getattr(getattr(self, FIELD_SECTION[key]), key)

    # -- dataset defaults ----------------------------------------------------
    def resolved(self) -> "Config":
        """Fill the fields left as None with the dataset's defaults."""
        d = self.data.dataset
        cfg = self
        if cfg.data.clip_seconds is None:
            cfg = replace(cfg, data=replace(cfg.data, clip_seconds=datasets.get(d).clip_seconds))
        if cfg.optim.lr is None:
            cfg = replace(cfg, optim=replace(cfg.optim, lr=datasets.get(d).lr))
        if cfg.optim.stage2_lr is None:
            cfg = replace(cfg, optim=replace(cfg.optim, stage2_lr=cfg.optim.lr))
        return cfg

    @property
    def n_folds(self) -> int:
        return datasets.get(self.data.dataset).n_folds

    def stages(self) -> list[dict]:
        """The training stages of this configuration's scheme: per stage its epochs, warm-up
        epochs and decay (``gamma``). The stage that minimises a SupCon term (the hybrid's only
        stage, stage 1 of the two-stage scheme) is ``contrastive_stretch`` times ``epochs`` long,
        with the warm-up stretched and the decay slowed to match (the same schedule, stretched)."""
        scheme = schemes.get(self.run.scheme)
        o, k = self.optim, self.optim.contrastive_stretch if scheme.contrastive else 1.0
        out = [{"epochs": int(round(o.epochs * k)), "warmup": int(round(o.warmup_epochs * k)), "gamma": o.gamma ** (1.0 / k)}]
        if scheme.two_stage:
            out.append({"epochs": o.stage2_epochs, "warmup": o.warmup_epochs, "gamma": o.stage2_gamma})
        return out

    @property
    def total_epochs(self) -> int:
        return sum(s["epochs"] for s in self.stages())

    # -- checks ----------------------------------------------------------------
    def validate(self) -> None:
        def choice(name: str, value: Any, allowed: tuple) -> None:
            if value not in allowed:
                raise ConfigError(f"setting {name}={value!r} is not valid: choose one of {', '.join(map(str, allowed))}")

        try:
            datasets.get(self.data.dataset)
        except ValueError as err:        # it names the registered datasets and how to add one
            raise ConfigError(f"setting dataset={self.data.dataset!r} is not valid: {err}") from None
        try:
            two_stage = schemes.get(self.run.scheme).two_stage
        except ValueError as err:        # it names the registered schemes and how to add one
            raise ConfigError(f"setting scheme={self.run.scheme!r} is not valid: {err}") from None
        choice("on_bad_file", self.data.on_bad_file, ("error", "skip"))
        choice("window", self.features.window, ("hamming", "hann"))
        choice("channels", self.features.channels, (1, 3))
        choice("trim", self.augment.trim, TRIM_RULES)
        choice("mask_fill", self.augment.mask_fill, MASK_FILLS)
        choice("pad", self.augment.pad, ("zero", "edge"))
        choice("backbone", self.model.backbone, BACKBONES)
        choice("optimizer", self.optim.optimizer, ("adam", "adamw"))
        choice("normalize", self.model.normalize, NORMALIZE)
        choice("supcon_form", self.optim.supcon_form, FORMS)
        choice("no_positive", self.optim.no_positive, NO_POSITIVE)
        choice("precision", self.run.precision, ("auto", "bf16", "fp32"))
        choice("stft_pad", self.features.stft_pad, ("reflect", "constant"))
        choice("mono_first_conv", self.model.mono_first_conv, ("fresh", "sum", "mean"))
        choice("tiny_design", self.model.tiny_design, ("pooled-centred", "plain"))
        choice("stage2_start", self.optim.stage2_start, ("final", "best_test", "best_val"))
        if self.data.synthetic_draw < 0 or (self.data.synthetic_draw and not datasets.get(self.data.dataset).generated):
            raise ConfigError(f"setting synthetic_draw={self.data.synthetic_draw} is not valid: it must be >= 0, and "
                              "only the synthetic dataset has draws (leave it at 0 for esc50, esc10, us8k and yours)")
        if not self.features.amplitude_scale > 0:
            raise ConfigError(f"setting amplitude_scale={self.features.amplitude_scale} is not valid: it must be > 0")
        if two_stage and self.optim.stage2_start == "best_val" and self.run.val_fold is None:
            raise ConfigError("setting stage2_start='best_val' needs a validation fold: set val_fold (or stage2_start="
                              "'final' or 'best_test')")
        folds = self.n_folds
        if not 1 <= self.run.test_fold <= folds:
            raise ConfigError(f"setting test_fold={self.run.test_fold} is not valid: {self.data.dataset} has folds 1..{folds}")
        if self.run.val_fold is not None and not 1 <= self.run.val_fold <= folds:
            raise ConfigError(f"setting val_fold={self.run.val_fold} is not valid: choose a fold in 1..{folds} (a grid "
                              "validates on the next fold for the test fold that equals it)")
        if not 0.0 <= self.optim.alpha <= 1.0:
            raise ConfigError(f"setting alpha={self.optim.alpha} is not valid: it must lie in [0, 1]")
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels", "batch_size", "projection_dim"):
            if self.get(name) <= 0:
                raise ConfigError(f"setting {name}={self.get(name)} is not valid: it must be positive")
        if self.optim.epochs < 1 or (two_stage and self.optim.stage2_epochs < 1):
            raise ConfigError(f"setting epochs={self.optim.epochs} / stage2_epochs={self.optim.stage2_epochs} is not valid: "
                              "train at least one epoch (and one stage-2 epoch for a two-stage scheme)")
        if not self.optim.contrastive_stretch >= 1.0:
            raise ConfigError(f"setting contrastive_stretch={self.optim.contrastive_stretch} is not valid: it must be >= 1")
        for name in ("freq_masks", "freq_mask_width", "time_masks", "time_mask_width", "epochs", "stage2_epochs", "warmup_epochs"):
            if self.get(name) < 0:
                raise ConfigError(f"setting {name}={self.get(name)} is not valid: it must be >= 0")

    # -- serialisation -------------------------------------------------------
    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, dict[str, Any]]) -> "Config":
        unknown = set(d) - set(SECTIONS)
        if unknown:
            raise ConfigError(f"unknown configuration sections {sorted(unknown)}: expected {sorted(SECTIONS)}")
        kwargs = {}
        for section, sub in SECTIONS.items():
            values = dict(d.get(section, {}))
            for old, new in RENAMED.items():    # a run folder written before the rename still loads
                if old in values and new not in values:
                    values[new] = values.pop(old)
            names = {f.name for f in fields(sub)}
            bad = set(values) - names
            if bad:
                raise ConfigError(f"unknown settings {sorted(bad)} in section {section!r}: valid ones are {sorted(names)}")
            kwargs[section] = sub(**values)
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg

    def identity(self) -> str:
        """A short hash of everything that changes what a run computes."""
        d = self.resolved().to_dict()
        flat = {k: v for sec in d.values() for k, v in sec.items() if k not in EXECUTION_FIELDS}
        source = schemes.get(self.run.scheme).source
        if source:              # a plugin's scheme: its file's contents too (the paper's schemes add nothing)
            flat["scheme_source"] = source
        origin = datasets.get(self.data.dataset).source
        if origin:              # a dataset of your own: its metadata's contents too (the built-in four add nothing)
            flat["dataset_source"] = origin
        blob = json.dumps(flat, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:10]


def setting_descriptions() -> dict[str, str]:
    """Each setting's description: the comment beside its field in this file (continued on the
    next lines when they hold only a comment). The command line's help and the book's API page
    show these, so a setting is described in one place."""
    out: dict[str, str] = {}
    last = None
    for line in inspect.getsource(inspect.getmodule(setting_descriptions)).splitlines():
        m = re.match(r"\s+(\w+): [^=]+=[^#]*#\s*(.+)$", line)
        if m and m.group(1) in FIELD_SECTION:
            last = m.group(1)
            out[last] = m.group(2).strip()
        elif last and re.match(r"\s+#\s*(.+)$", line):
            out[last] += " " + line.strip().lstrip("#").strip()
        else:
            last = None
    return out


def _unknown(name: str) -> str:
    return f"unknown setting {name!r}: valid settings are {', '.join(sorted(FIELD_SECTION))}"


def _coerce(section: str, key: str, value: Any) -> Any:
    """Convert strings (from a CLI or papermill) to the field's declared type."""
    ftype = {f.name: f.type for f in fields(SECTIONS[section])}[key]
    if not isinstance(value, str) or ftype == "str":
        if ftype == "float" and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value
    text = value.strip()
    if "None" in ftype and text.lower() in ("none", "null", ""):
        return None
    try:
        if ftype.startswith("bool"):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if ftype.startswith("int"):
            return int(text)
        if ftype.startswith("float"):
            return float(text)
    except ValueError:
        raise ConfigError(f"setting {key}={value!r} is not valid: expected {ftype}") from None
    return text


PRESETS: dict[str, dict[str, Any]] = {
    # Every value of the paper, and of its released code where the paper is silent (book: differences).
    "paper": {},
    # The offline default, sized for make book on a 2-core CPU: 8 kHz, 256-sample STFT, 32 mels, the tiny
    # backbone. The training settings (lr, masks, one schedule of E epochs for every scheme) were chosen by
    # studies/tune_quick.py on the tuning draw (synthetic_draw=1), never on the clips the book tests; the
    # temperature and alpha are the paper's. The book's tuning page shows the study.
    "quick": dict(
        sample_rate=8000, n_fft=256, hop_length=256, n_mels=32, channels=1,
        freq_masks=0, time_masks=0, freq_mask_width=8, time_mask_width=6,
        backbone="tiny", weights="none", batch_size=32,
        lr=1e-2, epochs=80, warmup_epochs=8, gamma=0.05 ** (1 / 71), temperature=0.05,
        contrastive_stretch=1.0, stage2_epochs=80, stage2_gamma=0.05 ** (1 / 71), stage2_lr=None, stage2_start="final",
    ),
}


def preset(name: str = "paper", **settings: Any) -> Config:
    """A named preset with flat settings on top: ``preset("quick", dataset="synthetic")``."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return Config().override(**PRESETS[name]).override(**settings)


INTERFACE_ENV = "SOUNDCLR_INTERFACE"   # "cli" while a `soundclr` command that takes the settings as flags runs


def setting_spelling(name: str, value: Any) -> str:
    """How the user in front of this process gives a setting, for error messages: the flag at the
    command line (``--on-bad-file skip``), the keyword in Python (``on_bad_file="skip"``)."""
    if os.environ.get(INTERFACE_ENV) == "cli":
        return f"--{name.replace('_', '-')} {value}"
    return f"{name}={value!r}".replace("'", '"')


def frames(cfg: "Config") -> int:
    """Frames of every model input: ``1 + clip_samples // hop_length`` (the STFT is centred)."""
    c = cfg.resolved()
    return 1 + c.data.clip_samples // c.features.hop_length
