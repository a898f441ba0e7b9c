"""The book's figure helpers: the most confused pairs against a hand computation, Fig. 4's bars and
table (mean and sd over seeds), the class colours, and the silhouette conclusion leaving the untrained
projection out of its ranking."""
import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from soundclr.analysis import tables as report
from soundclr.book import conclusions, figures

# -- the most confused pairs -----------------------------------------------------------------------
NAMES = ["dog", "siren", "clock_tick", "woodpecker"]
# rows: the true class (10, 8, 10 and 4 clips), columns: the predicted class
MATRIX = [[7, 1, 0, 2],
          [0, 6, 0, 2],
          [0, 0, 5, 5],
          [0, 1, 2, 1]]


def test_most_confused_by_hand():
    # Off-diagonal shares of the true class, worked by hand:
    #   woodpecker -> clock_tick 2/4 = 50 %, clock_tick -> woodpecker 5/10 = 50 % (more clips: first),
    #   siren -> woodpecker 2/8 = 25 %, woodpecker -> siren 1/4 = 25 % (fewer clips: after),
    #   dog -> woodpecker 2/10 = 20 %, dog -> siren 1/10 = 10 %; the other cells hold no clips.
    t = report.most_confused(MATRIX, NAMES, k=5)
    assert list(zip(t["true"], t["predicted"])) == [("clock_tick", "woodpecker"), ("woodpecker", "clock_tick"),
                                                    ("siren", "woodpecker"), ("woodpecker", "siren"),
                                                    ("dog", "woodpecker")]
    assert t["clips"].tolist() == [5, 2, 2, 1, 2]
    np.testing.assert_allclose(t["share (%)"], [50.0, 50.0, 25.0, 25.0, 20.0])


def test_most_confused_never_lists_the_diagonal_or_empty_cells():
    t = report.most_confused(MATRIX, NAMES, k=50)
    assert len(t) == 6                                   # the six non-zero off-diagonal cells
    assert (t["true"] != t["predicted"]).all() and (t["clips"] > 0).all()
    assert report.most_confused(np.eye(3, dtype=int) * 4, NAMES[:3]).empty   # a perfect classifier


def test_confused_pairs_table_names_pairs_per_scheme(tmp_path):
    import json
    rows = []
    for scheme, m in (("ce", MATRIX), ("hybrid", np.eye(4, dtype=int).tolist())):
        d = tmp_path / scheme
        d.mkdir()
        (d / "summary.json").write_text(json.dumps({"confusion": m, "class_names": NAMES}))
        rows.append({"scheme": scheme, "run_dir": str(d)})
    t = report.confused_pairs_table(pd.DataFrame(rows), k=3).reset_index()
    ce = t[t.scheme == "Cross-entropy"]
    assert list(zip(ce["true class"], ce["taken for"], ce["share of the true class (%)"])) == [
        ("clock_tick", "woodpecker", "50.0"), ("woodpecker", "clock_tick", "50.0"), ("siren", "woodpecker", "25.0")]
    assert t[t.scheme == "Hybrid (SoundCLR)"]["true class"].tolist() == ["(none confused)"]


# -- Fig. 4 ------------------------------------------------------------------------------------------
def runs(seeds=(0, 1, 2), base=0.9):
    return pd.DataFrame([{"scheme": s, "fold": f, "seed": seed, "final_acc": base + 0.01 * i + 0.001 * f + 0.002 * seed}
                         for i, s in enumerate(("hybrid", "ce", "supcon")) for f in (1, 2) for seed in seeds])


def test_fold_table_is_mean_and_sd_over_seeds():
    df = runs()
    t = report.scheme_fold_table(df)
    assert list(t.index) == ["Cross-entropy", "SupCon, two stages", "Hybrid (SoundCLR)"]
    acc = 100 * df[(df.scheme == "ce") & (df.fold == 2)].final_acc
    assert t.loc["Cross-entropy", "fold 2"] == f"{acc.mean():.2f} ± {acc.std():.2f}"
    assert t["seeds"].tolist() == [3, 3, 3]
    one = report.scheme_fold_table(runs(seeds=(0,)))
    assert "±" not in one.loc["Cross-entropy", "fold 1"]     # one run: no spread


@pytest.mark.parametrize("base, broken", [(0.9, True), (0.3, False)])
def test_fold_bars_error_bars_legend_and_baseline(base, broken):
    import matplotlib.pyplot as plt
    df = runs(base=base)
    fig = figures.fold_bars(df)
    axes = fig.axes
    assert len(axes) == (2 if broken else 1)
    assert axes[-1].get_ylim()[0] == 0                   # the (lowest) axis starts at 0
    top = axes[0]
    # one error bar per bar, as long as the sd over seeds
    caps = [c for c in top.containers if isinstance(c, matplotlib.container.ErrorbarContainer)]
    assert len(caps) == 3
    segs = caps[0].lines[2][0].get_segments()
    sd = 100 * df[(df.scheme == "ce")].groupby("fold").final_acc.std().to_numpy()
    np.testing.assert_allclose([s[1][1] - s[0][1] for s in segs], 2 * sd)
    # the legend belongs to the figure (outside the axes), not to an axis over the bars
    assert top.get_legend() is None and fig.legends
    plt.close(fig)


def test_learning_curve_ticks_are_few():
    import matplotlib.pyplot as plt
    rows = [{"fold": f, "seed": 0, "epoch": e, "stage": 1 if e <= 80 else 2, "train_loss": 1 / e,
             "test_acc": np.nan if e <= 80 else 0.9} for f in (1, 2) for e in range(1, 161)]
    fig = figures.learning_curves(pd.DataFrame(rows), "supcon")
    fig.canvas.draw()
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        assert len([t for t in ax.get_xticks() if lo <= t <= hi]) <= 5
    plt.close(fig)


def test_learning_curves_keep_fold_colours_to_the_accuracy_panel():
    """The fold legend sits on the accuracy panel, and the loss panels (every fold pooled) use no fold's colour."""
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt
    rows = [{"fold": f, "seed": 0, "epoch": e, "stage": 1 if e <= 5 else 2, "train_loss": 1 / e,
             "test_acc": np.nan if e <= 5 else 0.9} for f in (1, 2, 3) for e in range(1, 11)]
    fig = figures.learning_curves(pd.DataFrame(rows), "supcon")
    acc, *losses = fig.axes[:3]
    assert acc.get_legend() is not None and not fig.legends
    fold_colours = {mcolors.to_hex(line.get_color()) for line in acc.get_lines()}
    assert len(fold_colours) == 3
    for ax in losses:
        assert {mcolors.to_hex(line.get_color()) for line in ax.get_lines()}.isdisjoint(fold_colours)
    plt.close(fig)


def test_class_colours_are_distinct_for_fifty_classes():
    cmap = figures.class_colors(50)
    assert len({tuple(np.round(cmap(i), 3)) for i in range(50)}) == 50


# -- the untrained projection -----------------------------------------------------------------------
def test_silhouette_conclusion_leaves_the_untrained_projection_out():
    scores = {("ce", "representation"): 0.10, ("supcon", "representation"): 0.30, ("hybrid", "representation"): 0.20,
              ("ce", "projection"): 0.90, ("supcon", "projection"): 0.40, ("hybrid", "projection"): 0.35}
    text = conclusions.silhouette_conclusion(scores)
    z = [p for p in text.split("\n\n") if "projection space" in p][0]
    assert "separate best under SupCon, two stages" in z     # not cross-entropy's untrained 0.90
    assert "left out" in z and "untrained" in z


# -- the pages' sections (soundclr.book.sections) ----------------------------------------------------
def test_fig_3_says_which_bars_it_leaves_out_grouped_by_reason():
    from soundclr.book.sections.ablation import skipped_text
    text = skipped_text({"imagenet-1ch": "offline", "imagenet-3ch": "offline", "random-3ch": "the budget"})
    assert text == ("Not shown (offline): *ImageNet, 1 channel, no augmentation*; *ImageNet, 3 channels, no "
                    "augmentation*. Not shown (the budget): *random init, 3 channels, no augmentation*.")
    assert skipped_text({}) == ""


def test_fig_5_draws_a_line_per_scheme_and_tabulates_mean_and_sd():
    import matplotlib.pyplot as plt

    from soundclr.book.sections.robustness import noise_figure, noise_table
    rows = [{"scheme": s, "fold": f, "seed": seed, "noise_std": std, "accuracy": 90 - 1000 * std * (i + 1) + f + seed}
            for i, s in enumerate(("hybrid", "ce", "supcon")) for f in (1, 2) for seed in (0, 1)
            for std in (0.0, 1e-4, 1e-3)]
    noise = pd.DataFrame(rows)
    fig = noise_figure(noise)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0 (clean)", "1e-4", "1e-3"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["Cross-entropy", "SupCon, two stages",
                                                                   "Hybrid (SoundCLR)"]
    plt.close(fig)
    t = noise_table(noise)
    assert list(t.columns) == ["clean", "noise 0.0001", "noise 0.001"]
    assert list(t.index) == ["Cross-entropy", "SupCon, two stages", "Hybrid (SoundCLR)"]
    # as Table III: each seed averaged over the folds (90.5 and 91.5), then mean ± sd over the seeds
    assert t.loc["Hybrid (SoundCLR)", "noise 0.001"] == "91.00 ± 0.71"


def test_silhouette_table_marks_the_untrained_projection():
    from soundclr.book.sections.representations import silhouette_table
    scores = {(s, space): v for s in ("hybrid", "ce", "supcon") for space, v in (("representation", 0.1),
                                                                                ("projection", 0.2))}
    t = silhouette_table(scores)
    assert list(t.index) == ["representation h", "projection z"]
    assert list(t.columns) == ["Cross-entropy", "SupCon, two stages", "Hybrid (SoundCLR)"]
    assert t.loc["projection z", "Cross-entropy"] == "0.20 (untrained: not ranked)"
    assert t.loc["projection z", "Hybrid (SoundCLR)"] == "0.20"


def test_convergence_table_per_scheme():
    from soundclr.book.sections.claims import convergence_table
    conv = pd.DataFrame([{"scheme": s, "converged": c, "loss_change": lc, "spread": sp}
                         for s, c, lc, sp in (("hybrid", True, 0.01, 0.004), ("hybrid", False, 0.08, 0.02),
                                              ("ce", True, 0.02, 0.01))])
    t = convergence_table(conv)
    assert list(t.index) == ["Cross-entropy", "Hybrid (SoundCLR)"]
    assert t.loc["Hybrid (SoundCLR)"].tolist() == [2, 1, "8.0 %", "2.0 points"]


def test_training_page_states_each_stage():
    from soundclr.book.plan import make_plan
    from soundclr.book.sections.training import schedule_text
    plan = make_plan("synthetic", "quick", size="tiny", results="/nonexistent")
    assert schedule_text(plan, "hybrid").startswith("**Scheme**: Hybrid (SoundCLR), 2 epochs per run. It minimises 0.5 x "
                                                    "the supervised contrastive loss on z + 0.5 x the cross-entropy")
    assert schedule_text(plan, "supcon").startswith("**Scheme**: SupCon, two stages, stage 1 2 epochs, stage 2 1 epoch per run.")
    assert "stage 1 has no accuracy" in schedule_text(plan, "supcon")
    assert "stage 1" not in schedule_text(plan, "ce") and "stage 1" not in schedule_text(plan, "hybrid")
