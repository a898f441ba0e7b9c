"""The ``augmentations`` notebook: one clip through the pipeline (Fig. 2), eight training draws, the mask
fills, the explorer, and what the classes sound like.

The page's clip, draw and pipelines are chosen once per page (:func:`example`) and shared by the
sections.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Rectangle

from ...audio.io import to_float
from ...audio.pipeline import Pipeline
from ...datasets import get as dataset_of
from .. import figures
from ..conclusions import page_conclusion
from ..plan import PAPER_MASKS

FILL_NAMES = {"zero": "0 dB (the paper)", "min": "the floor (silence)", "mean": "the clip's mean"}
FILL_TITLE = {"zero": "0 dB (the loudest value)", "min": "the floor", "mean": "the mean"}


@dataclass
class Example:
    """The page's clip and pipelines.

    ``waves (1, samples)`` and ``lengths (1,)``: the clip as the bank holds it; ``clip``: its index in
    the bank; ``key``: the draw shown in Fig. 2 (its time mask falls on the sound); ``pipe``: the
    preset's training pipeline; ``shown``: the pipeline of Fig. 2's step 6 (the preset's, or the paper's
    masks when the preset has none: ``no_masks``)."""
    cfg: object
    bank: object
    clip: int
    waves: torch.Tensor
    lengths: torch.Tensor
    key: int
    pipe: Pipeline
    shown: Pipeline
    no_masks: bool

    @property
    def sample_rate(self) -> int:
        return self.bank.sample_rate

    @property
    def seconds(self) -> float:
        return self.cfg.data.clip_samples / self.sample_rate

    def spectrogram(self, ax, image, **kwargs):
        """:func:`soundclr.book.figures.spectrogram` at this configuration's rate, hop and floor."""
        return figures.spectrogram(ax, image, sample_rate=self.sample_rate, hop_length=self.cfg.features.hop_length,
                                   top_db=self.cfg.features.top_db, **kwargs)

    def with_masks(self, **augment) -> Pipeline:
        """A training pipeline with the paper's masks and ``augment`` on top of the preset's augmentation."""
        c = self.cfg
        return Pipeline.from_config(c.override(**{**PAPER_MASKS, **augment})).train()


def example(page) -> Example:
    """The page's clip (the first of the first 200 with silent margins and most of its length, so that
    the trim has something to remove) and the draw of Fig. 2, chosen once per page."""
    return page.cached("augmentations.example", lambda: _example(page))


def _example(page) -> Example:
    cfg, bank = page.config, page.bank
    pipe = Pipeline.from_config(cfg).train()
    no_masks = pipe.mask.freq_masks == 0 and pipe.mask.time_masks == 0
    ex = Example(cfg, bank, 0, torch.empty(0), torch.empty(0), 1, pipe, pipe, no_masks)
    shown = ex.with_masks() if no_masks else pipe
    waves_all, lens_all = bank.batch(torch.arange(min(len(bank), 200)))
    margins = ((waves_all[:, :400] == 0).all(1)) & (lens_all > 0.8 * cfg.data.clip_samples)
    clip = int(torch.nonzero(margins)[0]) if margins.any() else 0
    waves, lens = bank.batch(torch.tensor([clip]))
    return replace(ex, clip=clip, waves=waves, lengths=lens, key=masked_draw(shown, waves, lens), shown=shown)


def masked_draw(pipe: Pipeline, waves: torch.Tensor, lengths: torch.Tensor, tries: int = 500) -> int:
    """The first key (1, 2, ...) whose time mask is at least 3 frames wide and covers the loudest part of
    the clip (within 3 dB of its maximum), and whose frequency masks are at least 2 bands wide, so that
    the figure shows what masking does; 1 when ``pipe`` has no time mask or no key in ``tries`` does.
    ``waves (1, samples)``, ``lengths (1,)``."""
    if pipe.mask.time_masks == 0:
        return 1
    for key in range(1, tries):
        keys = torch.tensor([key])
        spec = pipe.trace(waves, lengths, keys=keys)["log_mel"][0]
        spans = pipe.mask.spans(keys, spec.shape[0], spec.shape[1])
        start, width = int(spans["time_start"][0, 0]), int(spans["time_width"][0, 0])
        wide_enough = spans["freq_width"].numel() == 0 or int(spans["freq_width"].min()) >= 2
        if width >= 3 and spec[:, start:start + width].max() > -3 and wide_enough:
            return key
    return 1


def figure_2(page) -> None:
    """Fig. 2: the clip through every stage (recorded, trimmed, scaled, padded or cropped, log-mel,
    masked, with the masks outlined), the clip's name, and a line on the network's input."""
    ex = example(page)
    sr, hop, shown = ex.sample_rate, ex.cfg.features.hop_length, ex.shown
    keys = torch.tensor([ex.key])
    trace = shown.trace(ex.waves, ex.lengths, keys=keys)
    spans = shown.mask.spans(keys, trace["log_mel"].shape[1], trace["log_mel"].shape[2])
    factor = trace["scale_lengths"][0].item() / max(trace["trim_lengths"][0].item(), 1)
    bank = ex.bank
    print(f"clip {bank.filenames[ex.clip]}, class {bank.class_names[int(bank.labels[ex.clip])]}")

    fig, axes = plt.subplots(6, 1, figsize=(figures.WIDTH, 11.5))
    span = ex.seconds * 1.3
    waves = [(trace["input"][0, :int(ex.lengths[0])], "1. the clip as recorded"),
             (trace["trim"][0, :int(trace["trim_lengths"][0])], "2. silent beginning and end removed"),
             (trace["scale"][0, :int(trace["scale_lengths"][0])],
              f"3. randomly scaled: x {factor:.2f} in length (pitch and tempo together)"),
             (trace["pad_crop"][0], f"4. padded or cropped at a random offset to {ex.seconds:g} s")]
    for ax, (signal, title) in zip(axes, waves):
        figures.wave(ax, signal, sample_rate=sr, seconds=span, title=title)
    ex.spectrogram(axes[4], trace["log_mel"][0], title="5. log-mel spectrogram")
    t = shown.mask.time_masks
    ex.spectrogram(axes[5], trace["mask"][0],
                   title=f"6. {shown.mask.freq_masks} frequency and {t} time mask{'s' if t != 1 else ''}, filled with "
                         f"{FILL_TITLE[shown.mask.fill]}"
                         + ("\n(the paper's masks: this preset trains with none)" if ex.no_masks else ""))
    outline = dict(fill=False, ec="cyan", lw=1, ls="--")
    for s, w in zip(spans["freq_start"][0].tolist(), spans["freq_width"][0].tolist()):
        axes[5].add_patch(Rectangle((0, s), ex.seconds, w, **outline))
    for s, w in zip(spans["time_start"][0].tolist(), spans["time_width"][0].tolist()):
        axes[5].add_patch(Rectangle((s * hop / sr, 0), w * hop / sr, trace["mask"].shape[1], **outline))
    for ax in axes[4:]:                 # one time axis for all six panels, so that the event lines up
        ax.set_xlim(0, span)
    plt.show()
    ch = ex.cfg.features.channels
    which = ("image 5 (this preset trains without masks; image 6 shows the paper's, as a training draw with them "
             "would be)" if ex.no_masks else "the last image")
    page.show(f"The network's input is {which}, copied to {ch} channel{'s' if ch > 1 else ''} (step 6 of the "
              f"paper's Fig. 2): {ch} x {trace['mask'].shape[1]} mel bands x {trace['mask'].shape[2]} frames.")


def listen(page) -> None:
    """Two players: the clip as recorded, and after trimming, scaling and pad/crop (Fig. 2's draw)."""
    from IPython.display import Audio  # IPython: the book extra's (a notebook's kernel)
    ex = example(page)
    trace = ex.shown.trace(ex.waves, ex.lengths, keys=torch.tensor([ex.key]))
    page.show(Audio(trace["input"][0, :int(ex.lengths[0])].numpy(), rate=ex.sample_rate),
              Audio(trace["pad_crop"][0].numpy(), rate=ex.sample_rate))


def draws(page, n: int = 8) -> None:
    """A 3 x 3 grid: ``n`` = 8 training draws of the preset's pipeline and the deterministic evaluation input."""
    ex = example(page)
    many = ex.pipe(ex.waves.repeat(n, 1), ex.lengths.repeat(n), keys=torch.arange(n) * 7919 + 11)
    ev = ex.pipe.eval()(ex.waves, ex.lengths)
    ex.pipe.train()
    fig, axes = plt.subplots(3, 3, figsize=(figures.WIDTH, 5.6), sharex=True, sharey=True)
    for i, ax in enumerate(axes.flat):
        img = (many[i] if i < n else ev[0])[0]
        ex.spectrogram(ax, img, colorbar=False, title="evaluation input" if i == n else f"draw {i + 1}")
        if i % 3:
            ax.set_ylabel("")
        if i < 6:
            ax.set_xlabel("")
    plt.show()


def fills(page) -> None:
    """The paper's masks on Fig. 2's draw, filled with 0 dB (the paper's), the floor, and the mean."""
    ex = example(page)
    fig, axes = plt.subplots(1, 3, figsize=(figures.WIDTH, 2.6), sharey=True)
    for ax, fill in zip(axes, ["zero", "min", "mean"]):
        img = ex.with_masks(mask_fill=fill)(ex.waves, ex.lengths, keys=torch.tensor([ex.key]))[0, 0]
        im = ex.spectrogram(ax, img, colorbar=False, title=FILL_NAMES[fill])
        if ax is not axes[0]:
            ax.set_ylabel("")
    fig.colorbar(im, ax=axes, label="dB re max", pad=0.01)
    plt.show()


def explorer(page) -> None:
    """The sliders of :func:`soundclr.book.figures.augmentation_explorer` on the page's clip (Lab), or
    the preset's own draw (the book)."""
    ex = example(page)
    figures.augmentation_explorer(ex.cfg, ex.waves, ex.lengths, interactive=page.interactive)


def classes(page, most: int = 10) -> None:
    """One clip of each of the first ``most`` classes, each under its name, to listen to."""
    from IPython.display import Audio  # IPython: the book extra's (a notebook's kernel)
    bank = page.bank
    if dataset_of(page.dataset).generated:
        page.show("The synthetic classes are generated procedurally by `soundclr.data.synthetic` (see its "
                  "docstring), in ESC-50's layout, with confusable pairs on purpose.")
    shown = min(most, bank.n_classes)
    page.show(f"One example of each of the {bank.n_classes} classes:" if shown == bank.n_classes
              else f"One example of each of the first {shown} of the {bank.n_classes} classes:")
    first_of: dict[int, int] = {}
    for i, label in enumerate(bank.labels.tolist()):
        first_of.setdefault(label, i)
    for label, i in sorted(first_of.items())[:shown]:
        w, n = bank.batch(torch.tensor([i]))
        page.show(f"**{bank.class_names[label]}**", Audio(to_float(w[0, : int(n[0])]).numpy(), rate=bank.sample_rate))


def conclusion(page) -> None:
    """C4a and C4b, from the ablation's runs (measured by the ``ablation`` notebook)."""
    led = page.ledger_if_finished(page.plan.ablation_runs())
    page.show(page_conclusion(led, ["C4a", "C4b"], page.plan,
                              lead="Whether these augmentations help is measured on the [ablation page](ablation.ipynb):"))
