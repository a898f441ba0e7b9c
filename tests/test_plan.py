"""The plan: which runs each page shows, each computation trained once, the Settings line."""
from collections import Counter

from soundclr.book.plan import PAPER_MASKS, make_plan


def quick(tmp_path, **kw):
    return make_plan("synthetic", "quick", results=str(tmp_path), data_root=str(tmp_path / "data"), **kw)


def test_every_run_once(tmp_path):
    plan = quick(tmp_path)
    runs = plan.all_runs()
    identities = [r.config.identity() for r in runs]
    assert len(identities) == len(set(identities))
    # every grid's runs are covered: each identity of each grid is in all_runs
    for grid in (plan.main_runs(), plan.alpha_runs(), plan.ablation_runs(), plan.masking_runs(), plan.fill_runs()):
        assert {r.config.identity() for r in grid} <= set(identities)
    main = Counter(r.config.run.scheme for r in plan.main_runs())
    assert main == {"ce": 10, "supcon": 10, "hybrid": 10}          # every fold, two seeds
    assert {r.config.run.test_fold for r in plan.alpha_runs()} == {1, 2, 3, 4, 5}   # every fold: C3 needs folds


def test_ablation_and_fill_use_the_papers_masks_when_the_preset_has_none(tmp_path):
    plan = quick(tmp_path, freq_masks=0, time_masks=0)
    spec = plan.ablation["random-1ch-wave-spec"]
    assert (spec["freq_masks"], spec["time_masks"]) == (PAPER_MASKS["freq_masks"], PAPER_MASKS["time_masks"])
    fills = {r.config.augment.mask_fill: r.config for r in plan.fill_runs()}
    assert set(fills) == {"zero", "min", "mean"}
    assert all((c.augment.freq_masks, c.augment.time_masks) == (2, 1) for c in fills.values())
    # without masks the wave-only bar is the main grid's cross-entropy: the same computation, trained once
    wave = [r for r in plan.ablation_runs() if r.variant == "random-1ch-wave"][0]
    ce = [r for r in plan.main_runs() if r.config.run.scheme == "ce" and r.config.run.seed == 0
          and r.config.run.test_fold == wave.config.run.test_fold][0]
    assert wave.config.identity() == ce.config.identity()


def test_settings_line_names_every_difference_from_the_paper(tmp_path):
    line = quick(tmp_path).settings_line()
    short, details = line.split("<details>")
    assert "80 epochs for every scheme" in short and "test folds 1-5" in short and "how-to-read" in short
    for needle in ("<code>sample_rate</code> 8000 (paper: 44100)", "<code>backbone</code> tiny (paper: resnet50)",
                   "<code>channels</code> 1 (paper: 3)", "<code>epochs</code>", "<code>lr</code> 0.01 (paper: 0.0005)",
                   "2.5-s clips"):
        assert needle in details, (needle, details)
    assert "<code>temperature</code>" not in line                   # the paper's 0.05: not a difference
    assert "contrastive_stretch" not in line                        # every scheme trains the same schedule
    assert "data_root" not in line and "device" not in line         # execution settings are not differences
    paper = make_plan("esc50", "paper", results=str(tmp_path), data_root=str(tmp_path), imagenet=True).settings_line()
    assert "Differs from the paper" not in paper


def test_the_paper_plan_holds_the_papers_grids(tmp_path):
    plan = make_plan("esc50", "paper", results=str(tmp_path), data_root=str(tmp_path), imagenet=True)
    assert len(plan.main_runs()) == 75 and len(plan.alpha_runs()) == 25
    assert len({(r.config.augment.freq_masks, r.config.augment.time_masks, r.config.augment.freq_mask_width,
                 r.config.augment.time_mask_width) for r in plan.masking_runs()}) == 48
    assert list(plan.ablation) == ["random-1ch", "random-3ch", "imagenet-1ch", "imagenet-3ch", "imagenet-3ch-wave",
                                   "imagenet-3ch-wave-spec"]
    assert plan.reductions == []


def test_the_tiny_tour_keeps_the_callers_settings():
    """size="tiny" shortens the schedule, but a setting the caller gives (papermill's `settings`) stays given."""
    from soundclr.book.plan import make_plan
    tiny = make_plan("synthetic", "quick", size="tiny", results="/nonexistent", data_root="/nonexistent", batch_size=16)
    assert tiny.config.optim.batch_size == 16 and tiny.config.optim.epochs == 2
    assert make_plan("synthetic", "quick", size="tiny", results="/x", data_root="/x").config.optim.batch_size == 32
