"""What each notebook runs, per preset and size: one place, so that every notebook agrees.

The notebooks take a handful of papermill parameters (dataset, preset, size, device,
results folder, ...) and ask :func:`make_plan` for a :class:`Plan`: the configuration and
every grid of runs the book shows (:meth:`Plan.main_runs` for Table III, Fig. 4, 5 and the
UMAPs; :meth:`Plan.alpha_runs` for Table II; :meth:`Plan.ablation_runs` for Fig. 3;
:meth:`Plan.masking_runs` for Table I; :meth:`Plan.fill_runs` for the mask-fill ablation).
``soundclr reproduce`` trains :meth:`Plan.all_runs` first, with several workers, and the
notebooks then find their runs finished.

The ``paper`` preset runs the paper's grids in full; ``quick`` (a 2-core CPU) runs every
fold but fewer seeds, values and panels; ``tiny`` (tests) the least. :meth:`Plan.reductions`
says in words what a size leaves out compared with the paper.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import EXECUTION_FIELDS, Config, frames, preset
from ..schemes import PAPER_SCHEMES
from ..schemes import get as scheme_of
from ..files import read_json
from ..runs.grid import reuse_twin, grid, run_grid
from ..weights import imagenet_cache_path

PAPER_ALPHAS = (0.01, 0.25, 0.5, 0.75, 0.99)
PAPER_NOISE = (0.0, 1e-4, 5e-4, 1e-3)
PAPER_MASK_PANELS = ((16, 32), (32, 32), (32, 64))   # (F, T) of Table I's three panels
PAPER_MASK_COUNTS = (0, 1, 2, 3)                     # f, t in 0..3

NO_WAVE_AUG = dict(trim="none", scale=False, random_crop=False)
NO_SPEC_AUG = dict(freq_masks=0, time_masks=0)
PAPER_MASKS = dict(freq_masks=2, time_masks=1)       # Table I's best: f = 2, t = 1

# Fig. 3's bars in the paper's order: what each adds, in words for the page.
ABLATION_LABELS = {
    "random-1ch": "random init, 1 channel, no augmentation",
    "random-3ch": "random init, 3 channels, no augmentation",
    "imagenet-1ch": "ImageNet, 1 channel, no augmentation",
    "imagenet-3ch": "ImageNet, 3 channels, no augmentation",
    "imagenet-3ch-wave": "ImageNet, 3 channels, + wave augmentation",
    "imagenet-3ch-wave-spec": "ImageNet, 3 channels, + wave and spectrogram augmentation",
    "random-1ch-wave": "random init, 1 channel, + wave augmentation",
    "random-1ch-wave-spec": "random init, 1 channel, + wave augmentation and the paper's masks (f = 2, t = 1)",
    "random-1ch-wave-preset": "random init, 1 channel, + wave augmentation and this preset's masks",
    "random-3ch-wave": "random init, 3 channels, + wave augmentation",
    "random-3ch-wave-spec": "random init, 3 channels, + wave augmentation and the paper's masks (f = 2, t = 1)",
    "random-3ch-wave-preset": "random init, 3 channels, + wave augmentation and this preset's masks",
}
FILL_LABELS = {"zero": "0 dB: the loudest value (paper)", "min": "the floor: silence", "mean": "the clip's mean"}


@dataclass
class Plan:
    config: Config
    size: str
    folds: list[int]
    seeds: list[int]
    alphas: list[float]
    alpha_folds: list[int]
    alpha_seeds: list[int]
    mask_panels: list[tuple[int, int]]
    freq_mask_counts: list[int]
    time_mask_counts: list[int]
    mask_folds: list[int]
    ablation: dict[str, dict[str, Any]]
    ablation_skipped: dict[str, str]
    ablation_folds: list[int]
    ablation_seeds: list[int]
    fills: list[str]
    noise_stds: list[float]
    ensemble_k: int
    results: str
    reductions: list[str] = field(default_factory=list)
    schemes: list[str] = field(default_factory=lambda: list(PAPER_SCHEMES))   # the main grid's: the paper's, then yours

    # -- the grids -------------------------------------------------------------------------
    def _grid(self, experiment: str, schemes, folds, seeds, variants=None):
        return grid(self.config, experiment, schemes=list(schemes), folds=folds, seeds=seeds, variants=variants,
                    results=Path(self.results))

    def main_runs(self, schemes=None):
        """Table III, Table IV, Fig. 4, Fig. 5, the UMAPs: every scheme of the plan (or of ``schemes``) x fold x seed."""
        return self._grid("main", self.schemes if schemes is None else schemes, self.folds, self.seeds)

    def alpha_runs(self):
        """Table II: the hybrid loss for each alpha."""
        return self._grid("alpha", ["hybrid"], self.alpha_folds, self.alpha_seeds,
                          {f"alpha{a:g}": {"alpha": a} for a in self.alphas})

    def ablation_runs(self):
        """Fig. 3: transfer learning, channels, wave and spectrogram augmentation (cross-entropy)."""
        return self._grid("ablation", ["ce"], self.ablation_folds, self.ablation_seeds, self.ablation)

    def masking_runs(self):
        """Table I: the number of frequency and time masks for each (F, T) panel (cross-entropy)."""
        variants = {f"F{F}T{T}f{f}t{t}": dict(freq_mask_width=F, time_mask_width=T, freq_masks=f, time_masks=t)
                    for F, T in self.mask_panels for f in self.freq_mask_counts for t in self.time_mask_counts}
        return self._grid("masking", ["ce"], self.mask_folds, self.ablation_seeds, variants)

    def fill_runs(self):
        """What the masks are filled with (cross-entropy): the paper's 0 dB, silence, the mean; with the
        preset's masks, or the paper's when the preset has none."""
        a = self.config.augment
        masks = {} if (a.freq_masks, a.time_masks) != (0, 0) else PAPER_MASKS
        return self._grid("mask-fill", ["ce"], self.mask_folds, self.ablation_seeds,
                          {f"fill-{f}": {"mask_fill": f, **masks} for f in self.fills})

    def all_runs(self):
        """Every run the book needs, each computation once (runs of the same configuration in two
        experiments, e.g. alpha = 0.5 in Table II and the hybrid of Table III, are trained once and
        copied), the main grid first."""
        seen, out = set(), []
        for run in [*self.main_runs(), *self.alpha_runs(), *self.ablation_runs(), *self.masking_runs(), *self.fill_runs()]:
            key = run.config.identity()
            if key not in seen:
                seen.add(key)
                out.append(run)
        return out

    def fill_settings_text(self) -> str:
        """Markdown: what the mask-fill runs train with (the preset's masks, or the paper's when the preset
        has none), in words."""
        a = self.config.augment
        if (a.freq_masks, a.time_masks) == (0, 0):
            masks = (f"the paper's masks (f = {PAPER_MASKS['freq_masks']}, t = {PAPER_MASKS['time_masks']}; this preset "
                     "trains without masks)")
        else:
            masks = f"this preset's masks (f = {a.freq_masks}, t = {a.time_masks})"
        return (f"Cross-entropy with {masks} of widths F = {a.freq_mask_width}, T = {a.time_mask_width}, on test folds "
                f"{_span(self.mask_folds)}; everything else as in the preset. Mean ± standard deviation over those folds' runs, "
                "and the 95 % interval over their test clips.")

    def train_missing(self, runs, *, bars: bool = False) -> None:
        """Train the runs in ``runs`` that the results store does not hold yet, saying so first and
        showing progress (progress ``bars`` in Jupyter Lab, lines otherwise: a book page gets no widget);
        finished runs, and twins finished in another experiment, are only read. What a notebook cell
        calls before it reads its runs."""
        runs = list(runs)
        todo = [] if self.finished(runs) else [r for r in runs if not r.finished]
        if todo:
            print(f"{len(todo)} of the {len(runs)} training runs this cell reads are not in {self.results} yet: training "
                  f"them now, one after another (a progress bar per run below; a stopped notebook resumes where it was).",
                  flush=True)
        run_grid(runs, progress=bool(todo) and bars, verbose=bool(todo), wait=True)

    def finished(self, runs) -> bool:
        """Whether every run in ``runs`` is finished. A run whose computation finished in another
        experiment of the store (the book trains each computation once) is copied into place first."""
        for run in runs:
            if not run.finished:
                reuse_twin(run, lambda *args, **kwargs: None, "")
        return all(run.finished for run in runs)

    # -- words for the pages -------------------------------------------------------------------
    def settings_line(self, here: str = "") -> str:
        """Markdown: one short sentence on what this page ran, links to what the preset leaves out (the Claims
        page's last section; on that page itself, ``here == "claims"``, no link to itself) and to how to read the
        pages, and every setting that differs from the paper's behind a dropdown."""
        c = self.config.resolved()
        paper = preset("paper", dataset=c.data.dataset).resolved()
        weights = "ImageNet weights" if c.model.weights == "imagenet" else "random initialisation"
        short = (f"**Settings**: {c.data.dataset}, preset `{self.size}`: the `{c.model.backbone}` network ({weights}), "
                 f"{c.optim.epochs} epochs for every scheme"
                 + (f" ({c.optim.contrastive_stretch:g} times as many for the contrastive stages)"
                    if c.optim.contrastive_stretch != 1 else "")
                 + f", test folds {_span(self.folds)}, seeds {_span(self.seeds)}. What this preset leaves out: "
                 + ("the last section of this page; " if here == "claims" else
                    "[the Claims page](claims.ipynb#what-this-build-leaves-out); ")
                 + "[how to read these pages](../book/results.md#how-to-read-these-pages).")
        changed = [f"<li><code>{k}</code> {_fmt(v)} (paper: {_fmt(paper.get(k))})</li>" for k, v in _flat(c).items()
                   if k not in NOT_A_CHANGE and v != paper.get(k)]
        every = (f"{c.features.channels} channel{'s' if c.features.channels > 1 else ''}, {c.data.sample_rate / 1000:g} kHz, "
                 f"{c.data.clip_seconds:g}-s clips, {c.features.n_mels} mel bands, batch {c.optim.batch_size}, "
                 f"lr {c.optim.lr:g}, temperature {c.optim.temperature:g}")
        details = (f"<details><summary>Every setting of this page</summary>\n\n{every}."
                   + (f" Differs from the paper's settings in:<ul>{''.join(changed)}</ul>" if changed else "")
                   + "\n\n</details>")
        return short + "\n\n" + details

    def provenance_line(self) -> str:
        """Where the results of the main grid came from: the versions, the device, the code's git
        commit, and the training time, read from the finished runs' summaries."""
        found = []
        for run in self.main_runs():
            if run.finished:
                try:
                    found.append(read_json(run.directory / "summary.json"))
                except ValueError:
                    continue
        if not found:
            return ""
        provs = [s.get("provenance") or {} for s in found]

        def values(key):
            return sorted({str(p.get(key)) for p in provs if p.get(key)})
        commits = [c[:12] + ("+modified" if c.endswith("+modified") else "") for c in values("git_commit")]
        hours = sum(s.get("seconds", 0) for s in found) / 3600
        return (f"**Provenance**: {len(found)} main-grid runs trained with soundclr {', '.join(values('soundclr'))}, "
                f"torch {', '.join(values('torch'))}, torchaudio {', '.join(values('torchaudio'))}, torchvision "
                f"{', '.join(values('torchvision'))}, on {'; '.join(values('device'))}"
                + (f", code at commit {', '.join(commits)}" if commits else "")
                + (f"; {hours * 60:.0f} minutes of training in all." if hours < 2 else f"; {hours:.1f} hours of training in all."))

    def runs_line(self, runs) -> str:
        """Markdown: how many training runs a page reads, how many are finished and how long they took
        here (from their summaries), and what running the page would train."""
        self.finished(runs)          # a computation finished in another experiment counts (copied into place)
        done = [r for r in runs if r.finished]
        seconds = 0.0
        for r in done:
            try:
                seconds += read_json(r.directory / "summary.json").get("seconds", 0.0)
            except ValueError:
                continue
        text = f"**Runs**: this page reads {len(runs)} training run{'s' if len(runs) != 1 else ''}; {len(done)} finished"
        if done:
            text += f" ({seconds / 60:.1f} minutes of training on this machine, {seconds / len(done):.0f} s per run)"
        todo = len(runs) - len(done)
        if todo:
            text += f"; running this page first trains the other {todo}"
            if done:
                text += f" (about {todo * seconds / len(done) / 60:.0f} minutes at that pace, in one process)"
        return text + "."


# Settings the Settings line does not list as "changed from the paper": how a run executes, and what the plan's grids set.
NOT_A_CHANGE = EXECUTION_FIELDS | {"scheme", "test_fold", "val_fold", "seed", "dataset"}


def _flat(cfg: Config) -> dict[str, Any]:
    return {k: v for sec in cfg.to_dict().values() for k, v in sec.items()}


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _span(values: list[int]) -> str:
    values = list(values)
    if len(values) > 2 and values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}-{values[-1]}"
    return ", ".join(map(str, values))


def imagenet_weights_available(backbone: str) -> bool:
    """Whether torchvision's ImageNet weights for ``backbone`` are already in the torch hub cache."""
    if backbone == "tiny":
        return False
    return imagenet_cache_path(backbone).exists()


def project_root(start: str | Path | None = None) -> Path | None:
    """The soundclr project that holds ``start`` (default: the working directory): the nearest folder
    at or above it with ``notebooks/`` and the ``pyproject.toml`` of soundclr; None outside a project."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "notebooks").is_dir() and (folder / "pyproject.toml").is_file():
            try:
                name = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))["project"]["name"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if name == "soundclr":
                return folder
    return None


def project_path(path: str | Path) -> str:
    """A notebook's results or data folder: a relative path is taken from the project root (the folder
    of ``pyproject.toml`` and ``notebooks/``) wherever the kernel runs inside the project, so that
    ``results = "results"`` finds the runs ``make book`` trained both under papermill (run from the
    root) and in Jupyter Lab (whose kernels start in ``notebooks/``). Outside a project, and for an
    absolute path, the path is used as given."""
    path = Path(path).expanduser()
    if path.is_absolute():
        return str(path)
    root = project_root()
    return str(root / path) if root is not None else str(path)


def make_plan(dataset: str = "synthetic", preset_name: str = "quick", *, size: str | None = None,
              device: str = "auto", results: str = "results", data_root: str = "data",
              epochs: int | None = None, folds: list[int] | None = None, seeds: list[int] | None = None,
              alphas: list[float] | None = None, noise_stds: list[float] | None = None, imagenet: bool | None = None,
              schemes: list[str] | str | None = None, **settings: Any) -> Plan:
    """The configuration and the grids a notebook runs.

    ``size``: ``None`` (the preset's own), or ``"tiny"`` (smallest settings, for tests).
    ``epochs``, ``folds``, ``seeds``, ``alphas``, ``noise_stds`` and any configuration setting
    override the plan. ``imagenet``: whether ImageNet weights can be had (default: whether
    they are in the torch hub cache); without them Fig. 3's transfer-learning bars are left out.
    ``schemes``: the main grid's schemes (a list, or a comma-separated string); None: the paper's three. A
    scheme of your own (registered by a plugin, :mod:`soundclr.schemes`) is trained and shown beside them,
    under the same schedule, folds, seeds and statistics; the paper's three are always kept, so that every
    claim of the paper stays testable.
    A relative ``results`` or ``data_root`` is taken from the project root (:func:`project_path`).
    """
    results, data_root = project_path(results), project_path(data_root)
    schemes = plan_schemes(schemes)
    cfg = preset(preset_name, dataset=dataset, device=device, data_root=data_root, **settings)
    size = size or preset_name
    if size not in ("paper", "quick", "tiny"):
        raise ValueError(f"size={size!r} is not valid: choose 'paper', 'quick' or 'tiny'")
    all_folds = list(range(1, cfg.n_folds + 1))
    reductions: list[str] = []
    if size == "paper":
        p = dict(folds=all_folds, seeds=[0, 1, 2, 3, 4], alphas=list(PAPER_ALPHAS), alpha_folds=all_folds, alpha_seeds=[0],
                 mask_panels=list(PAPER_MASK_PANELS), freq_mask_counts=list(PAPER_MASK_COUNTS),
                 time_mask_counts=list(PAPER_MASK_COUNTS), mask_folds=all_folds, ablation_folds=all_folds,
                 ablation_seeds=[0], fills=["zero", "min", "mean"])
    elif size == "quick":
        p = dict(folds=all_folds, seeds=[0, 1], alphas=list(PAPER_ALPHAS), alpha_folds=all_folds, alpha_seeds=[0],
                 mask_panels=[(cfg.augment.freq_mask_width, cfg.augment.time_mask_width)], freq_mask_counts=[0, 2],
                 time_mask_counts=[0, 1], mask_folds=all_folds[:2], ablation_folds=all_folds, ablation_seeds=[0],
                 fills=["zero", "min", "mean"])
        reductions += ["the main grid (Table III, Fig. 4, 5) uses 2 seeds (the paper: 5), so the ensembles of Table IV "
                       "have 2 members (the paper: 5)",
                       "the alpha sweep (Table II) and the ablation (Fig. 3) use one seed on every fold; Fig. 3 leaves "
                       "out the comparison of one and three channels without ImageNet weights",
                       f"Table I has one panel (F = {cfg.augment.freq_mask_width} of {cfg.features.n_mels} mel bands, "
                       f"T = {cfg.augment.time_mask_width} of {frames(cfg)} frames: the paper's widths in proportion) and "
                       "f, t in {0, 2} x {0, 1}, on test folds 1 and 2 (the paper: three panels, f and t in 0..3, every fold); "
                       "the mask-fill ablation uses the same two folds"]
    else:  # tiny: for tests
        # the tour's short schedule, under the caller's own settings (a batch size given stays given)
        cfg = cfg.override(**{**dict(epochs=2, warmup_epochs=1, stage2_epochs=1, batch_size=32), **settings})
        p = dict(folds=[1], seeds=[0, 1], alphas=[0.5, 0.99], alpha_folds=[1], alpha_seeds=[0],
                 mask_panels=[(cfg.augment.freq_mask_width, cfg.augment.time_mask_width)], freq_mask_counts=[0, 1],
                 time_mask_counts=[1], mask_folds=[1], ablation_folds=[1], ablation_seeds=[0], fills=["zero", "mean"])
        reductions += ["tiny test settings: 2 epochs, test fold 1, 2 seeds, 2 alpha values, f in 0..1, t = 1"]
    if epochs is not None:
        cfg = cfg.override(epochs=epochs)
    if folds is not None:
        p["folds"] = list(folds)
    if seeds is not None:
        p["seeds"] = list(seeds)
    if alphas is not None:
        p["alphas"] = list(alphas)

    # Fig. 3: transfer learning, 1 vs 3 channels, wave and spectrogram augmentation.
    none_aug = {**NO_WAVE_AUG, **NO_SPEC_AUG}
    ablation = {
        "random-1ch": dict(weights="none", channels=1, **none_aug),
        "random-3ch": dict(weights="none", channels=3, **none_aug),
        "imagenet-1ch": dict(weights="imagenet", channels=1, **none_aug),
        "imagenet-3ch": dict(weights="imagenet", channels=3, **none_aug),
        "imagenet-3ch-wave": dict(weights="imagenet", channels=3, **NO_SPEC_AUG),
        "imagenet-3ch-wave-spec": dict(weights="imagenet", channels=3, **PAPER_MASKS),
    }
    skipped = {}
    if not (imagenet if imagenet is not None and cfg.model.backbone != "tiny" else
            imagenet_weights_available(cfg.model.backbone)):
        why = (f"the `{cfg.model.backbone}` backbone has no ImageNet weights" if cfg.model.backbone == "tiny"
               else "ImageNet weights are not in the torch hub cache (offline)")
        for name in [n for n in ablation if n.startswith("imagenet")]:
            skipped[name] = why
            del ablation[name]
        ch = cfg.features.channels
        if size == "quick":
            skipped["random-3ch"] = "left out of the quick preset to fit the CPU budget"
            del ablation["random-3ch"]
        ablation[f"random-{ch}ch-wave"] = dict(weights="none", channels=ch, **NO_SPEC_AUG)
        ablation[f"random-{ch}ch-wave-spec"] = dict(weights="none", channels=ch, **PAPER_MASKS)
        preset_masks = (cfg.augment.freq_masks, cfg.augment.time_masks)
        if preset_masks not in ((PAPER_MASKS["freq_masks"], PAPER_MASKS["time_masks"]), (0, 0)):
            ablation[f"random-{ch}ch-wave-preset"] = dict(weights="none", channels=ch)   # = the main grid's cross-entropy
        reductions.append(f"Fig. 3's transfer-learning bars are left out because {why}; the augmentation "
                          f"steps are shown on a randomly initialised {ch}-channel backbone instead")
    return Plan(config=cfg, size=size, ablation=ablation, ablation_skipped=skipped,
                noise_stds=list(noise_stds) if noise_stds is not None else list(PAPER_NOISE),
                ensemble_k=len(p["seeds"]), results=results, reductions=reductions, schemes=schemes, **p)


def plan_schemes(schemes: list[str] | str | None) -> list[str]:
    """The main grid's schemes: the paper's three, then each other scheme of ``schemes`` (a list or a
    comma-separated string) in the order given; an unregistered name is a ValueError saying how to load it."""
    given = [s.strip() for s in (schemes.split(",") if isinstance(schemes, str) else schemes or []) if s.strip()]
    for name in given:
        scheme_of(name)                     # unknown: the registry's error (names the schemes, says --plugin FILE)
    return [*PAPER_SCHEMES, *dict.fromkeys(s for s in given if s not in PAPER_SCHEMES)]
