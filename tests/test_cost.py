"""What a grid costs: clip counts against a hand count, FLOPs against ResNet-50's published figure."""
import pytest

from soundclr import preset
from soundclr.book import cost


def test_run_counts_by_hand():
    ce = cost.run_counts(preset("paper", dataset="esc50", scheme="ce").resolved())
    # 800 epochs x (1600 training clips less the partial last batch of 1600 % 128 = 64) and 400 test clips
    assert ce == {"train": 800 * 1536, "stage2": 0, "evaluate": 800 * 400}
    supcon = cost.run_counts(preset("paper", dataset="esc50", scheme="supcon").resolved())
    # the released code's stage-2 start evaluates the test fold in every stage-1 epoch too
    assert supcon == {"train": 800 * 1536, "stage2": 800 * 1536, "evaluate": 1600 * 400}
    quick = cost.run_counts(preset("quick", scheme="supcon").resolved())
    assert quick == {"train": 80 * 320, "stage2": 80 * 320, "evaluate": 80 * 80}   # 80 + 80 epochs, stage 2 scored
    us8k = cost.run_counts(preset("paper", dataset="us8k", scheme="hybrid", test_fold=10).resolved())
    train = 8732 - 837
    assert us8k == {"train": 800 * (train - train % 128), "stage2": 0, "evaluate": 800 * 837}


def test_resnet50_flops_match_the_published_count():
    """ResNet-50 is 4.09 GMACs at 224 x 224 (He et al.; torchvision); convolutions scale with the pixels,
    so 3 x 128 x 431 is about 4.09e9 x 2 x (128 x 431) / (224 x 224) FLOPs."""
    f = cost.flops_per_clip(preset("paper", dataset="esc50"))
    expected = 4.09e9 * 2 * (128 * 431) / (224 * 224)
    assert f["forward"] == pytest.approx(expected, rel=0.05)
    assert f["train"] == 3 * f["forward"]


def test_the_paper_plan_and_hours():
    t = cost.cost_table("esc50", cost.Throughput(train=1000.0, stage2=3000.0, evaluate=3000.0))
    main = t.loc["main"]
    assert main["runs"] == 75                                   # 3 schemes x 5 folds x 5 seeds
    assert t.loc["the whole book", "runs"] == t.drop(index="the whole book")["runs"].sum()
    expected = (main["train"] / 1000 + main["stage2"] / 3000 + main["evaluate"] / 3000) / 3600
    assert main["hours"] == pytest.approx(expected)
    assert t.loc["alpha", "runs"] == 20                         # alpha = 0.5 is the main grid's hybrid, reused
