"""The losses against the paper's equations written out as plain loops, and against pytorch-metric-learning."""
import math

import pytest
import torch
import torch.nn.functional as F

from soundclr.losses import cross_entropy_loss, hybrid_loss, supcon_loss


def brute_supcon(z, labels, tau, form="out", no_positive="exclude"):
    """Khosla et al.'s L_out / L_in, one view per sample, as a double loop in float64."""
    z = z.detach().double().tolist()
    y = labels.tolist()
    n = len(y)

    def sim(i, k):
        return sum(a * b for a, b in zip(z[i], z[k]))

    losses = []
    for i in range(n):
        positives = [p for p in range(n) if p != i and y[p] == y[i]]
        if not positives:
            losses.append(None)
            continue
        denominator = sum(math.exp(sim(i, k) / tau) for k in range(n) if k != i)
        if form == "out":
            li = -sum(math.log(math.exp(sim(i, p) / tau) / denominator) for p in positives) / len(positives)
        else:
            li = -math.log(sum(math.exp(sim(i, p) / tau) / denominator for p in positives) / len(positives))
        losses.append(li)
    kept = [li for li in losses if li is not None]
    if not kept:
        return 0.0
    return sum(kept) / (len(kept) if no_positive == "exclude" else n)


def random_batch(n, dim, n_classes, seed):
    g = torch.Generator().manual_seed(seed)
    z = F.normalize(torch.randn(n, dim, generator=g), dim=1)
    labels = torch.randint(0, n_classes, (n,), generator=g)
    return z, labels


@pytest.mark.parametrize("n,n_classes", [(2, 1), (5, 2), (16, 3), (16, 10), (48, 12)])
@pytest.mark.parametrize("form", ["out", "in"])
@pytest.mark.parametrize("no_positive", ["exclude", "zero"])
def test_supcon_equals_the_equation_as_a_loop(n, n_classes, form, no_positive):
    for seed in range(2):
        z, labels = random_batch(n, 8, n_classes, seed)
        for tau in (0.05, 0.5):
            got = supcon_loss(z, labels, tau, form=form, no_positive=no_positive)
            want = brute_supcon(z, labels, tau, form, no_positive)
            assert got.dtype == torch.float32 and got.dim() == 0
            assert got.item() == pytest.approx(want, rel=1e-5, abs=1e-5)


def test_forms_differ_and_out_is_at_least_in():
    # Jensen: the mean of -log is at least -log of the mean, so L_out >= L_in.
    z, labels = random_batch(32, 8, 4, seed=3)
    out = supcon_loss(z, labels, 0.1, form="out")
    inn = supcon_loss(z, labels, 0.1, form="in")
    assert out.item() > inn.item() + 1e-3


def test_matches_pytorch_metric_learning_when_every_anchor_has_a_positive():
    from pytorch_metric_learning.losses import SupConLoss

    g = torch.Generator().manual_seed(0)
    for n_classes, per_class, tau in [(4, 2, 0.05), (8, 4, 0.1), (3, 10, 0.5)]:
        labels = torch.arange(n_classes).repeat(per_class)[torch.randperm(n_classes * per_class, generator=g)]
        z = F.normalize(torch.randn(len(labels), 16, generator=g), dim=1)
        want = SupConLoss(temperature=tau)(z, labels)
        for no_positive in ("exclude", "zero"):  # no singletons: both rules agree
            assert supcon_loss(z, labels, tau, no_positive=no_positive).item() == pytest.approx(want.item(), rel=1e-5)


def test_anchors_without_positive_against_pytorch_metric_learning():
    """pytorch-metric-learning gives an anchor with no positive a loss of 0 and by default
    averages only the non-zero losses (AvgNonZeroReducer): that is our "exclude".
    With MeanReducer it divides by the batch size, like the released code: our "zero"."""
    from pytorch_metric_learning.losses import SupConLoss
    from pytorch_metric_learning.reducers import MeanReducer

    labels = torch.tensor([0, 0, 0, 1, 1, 2, 3, 4, 5, 5, 6])  # 2, 3, 4 and 6 are singletons
    z = F.normalize(torch.randn(len(labels), 16, generator=torch.Generator().manual_seed(1)), dim=1)
    tau = 0.05
    exclude = supcon_loss(z, labels, tau, no_positive="exclude")
    zero = supcon_loss(z, labels, tau, no_positive="zero")
    assert exclude.item() == pytest.approx(SupConLoss(temperature=tau)(z, labels).item(), rel=1e-5)
    assert zero.item() == pytest.approx(SupConLoss(temperature=tau, reducer=MeanReducer())(z, labels).item(), rel=1e-5)
    # 7 of 11 anchors have a positive
    assert zero.item() == pytest.approx(exclude.item() * 7 / 11, rel=1e-6)


def test_one_class_only_is_finite():
    # Every other clip is a positive and there is no negative. (pytorch-metric-learning returns 0 here;
    # the equation does not, and neither do we.)
    z, _ = random_batch(12, 8, 1, seed=4)
    z.requires_grad_(True)
    labels = torch.zeros(12, dtype=torch.long)
    loss = supcon_loss(z, labels, 0.05)
    loss.backward()
    assert loss.item() == pytest.approx(brute_supcon(z, labels, 0.05), rel=1e-5)
    assert loss.item() >= math.log(11) - 1e-5  # the uniform case is the minimum
    assert torch.isfinite(z.grad).all()


@pytest.mark.parametrize("form", ["out", "in"])
@pytest.mark.parametrize("no_positive", ["exclude", "zero"])
def test_all_classes_distinct_gives_zero_with_zero_gradient(form, no_positive):
    z, _ = random_batch(10, 8, 1, seed=5)
    z.requires_grad_(True)
    loss = supcon_loss(z, torch.arange(10), 0.05, form=form, no_positive=no_positive)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(z.grad, torch.zeros_like(z))


def test_batch_of_one_gives_zero_with_a_gradient_path():
    z = F.normalize(torch.randn(1, 8), dim=1).requires_grad_(True)
    loss = supcon_loss(z, torch.tensor([3]))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(z.grad, torch.zeros_like(z))


@pytest.mark.parametrize("form", ["out", "in"])
def test_identical_features_are_finite(form):
    z = F.normalize(torch.randn(1, 8), dim=1).repeat(9, 1).requires_grad_(True)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3])
    loss = supcon_loss(z, labels, 0.05, form=form)
    loss.backward()
    assert loss.item() == pytest.approx(brute_supcon(z, labels, 0.05, form), rel=1e-5)
    assert torch.isfinite(z.grad).all()


def test_tiny_temperature_with_near_identical_vectors():
    g = torch.Generator().manual_seed(6)
    base = torch.randn(1, 32, generator=g)
    z = F.normalize(base + 1e-3 * torch.randn(64, 32, generator=g), dim=1).requires_grad_(True)
    labels = torch.randint(0, 8, (64,), generator=g)
    for form in ("out", "in"):
        z.grad = None
        loss = supcon_loss(z, labels, 0.01, form=form)
        loss.backward()
        assert loss.item() == pytest.approx(brute_supcon(z, labels, 0.01, form), rel=1e-4)
        assert torch.isfinite(z.grad).all()


def test_large_similarity_over_tiny_temperature_does_not_overflow():
    # exp(1 / 0.001) overflows float32 and float64; the log-sum-exp form never takes it.
    z = F.normalize(torch.randn(6, 4, generator=torch.Generator().manual_seed(7)), dim=1).requires_grad_(True)
    loss = supcon_loss(z, torch.tensor([0, 0, 1, 1, 2, 2]), 0.001)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()


def test_bf16_inputs_are_computed_in_float32():
    z, labels = random_batch(32, 16, 4, seed=8)
    zb = z.bfloat16().requires_grad_(True)
    loss = supcon_loss(zb, labels, 0.05)
    loss.backward()
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(brute_supcon(zb.float(), labels, 0.05), rel=1e-5)
    assert zb.grad.dtype == torch.bfloat16 and torch.isfinite(zb.grad.float()).all()


def test_autocast_does_not_lower_the_precision():
    z, labels = random_batch(64, 16, 8, seed=9)
    logits = torch.randn(64, 8)
    want_s, want_h = supcon_loss(z, labels), hybrid_loss(z, logits, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got_s, got_h = supcon_loss(z, labels), hybrid_loss(z, logits, labels)
    assert got_s.dtype == torch.float32 and got_h.dtype == torch.float32
    assert got_s.item() == pytest.approx(want_s.item(), rel=1e-6)
    assert got_h.item() == pytest.approx(want_h.item(), rel=1e-6)


def _mean_cosine(z, labels, same):
    sims = z @ z.T
    mask = (labels[:, None] == labels[None, :]) == same
    mask &= ~torch.eye(len(labels), dtype=torch.bool)
    return sims[mask].mean().item()


@pytest.mark.parametrize("seed", range(3))
def test_a_gradient_step_pulls_positives_together_and_pushes_negatives_apart(seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(32, 8, generator=g, requires_grad=True)
    labels = torch.randint(0, 4, (32,), generator=g)
    supcon_loss(F.normalize(w, dim=1), labels, 0.1).backward()
    with torch.no_grad():
        before = F.normalize(w, dim=1)
        after = F.normalize(w - 0.05 * w.grad, dim=1)
    assert _mean_cosine(after, labels, True) > _mean_cosine(before, labels, True)
    assert _mean_cosine(after, labels, False) < _mean_cosine(before, labels, False)


def brute_cross_entropy(logits, labels):
    total = 0.0
    for row, y in zip(logits.double().tolist(), labels.tolist()):
        total += -(row[y] - math.log(sum(math.exp(v) for v in row)))
    return total / len(labels)


def test_cross_entropy_is_eq2():
    g = torch.Generator().manual_seed(10)
    logits, labels = torch.randn(20, 7, generator=g) * 3, torch.randint(0, 7, (20,), generator=g)
    assert cross_entropy_loss(logits, labels).item() == pytest.approx(brute_cross_entropy(logits, labels), rel=1e-6)
    assert cross_entropy_loss(logits.bfloat16(), labels).dtype == torch.float32


def test_hybrid_is_eq4():
    z, labels = random_batch(24, 8, 5, seed=11)
    logits = torch.randn(24, 5, generator=torch.Generator().manual_seed(12))
    s, ce = brute_supcon(z, labels, 0.05), brute_cross_entropy(logits, labels)
    for alpha in (0.0, 0.25, 0.5, 1.0):
        got = hybrid_loss(z, logits, labels, alpha=alpha, temperature=0.05)
        assert got.item() == pytest.approx(alpha * s + (1 - alpha) * ce, rel=1e-5)
    assert hybrid_loss(z, logits, labels, alpha=0.0).item() == pytest.approx(cross_entropy_loss(logits, labels).item(), rel=1e-6)
    assert hybrid_loss(z, logits, labels, alpha=1.0).item() == pytest.approx(supcon_loss(z, labels).item(), rel=1e-6)
    # options reach the contrastive term
    got = hybrid_loss(z, logits, labels, alpha=1.0, temperature=0.3, form="in", no_positive="zero")
    assert got.item() == pytest.approx(brute_supcon(z, labels, 0.3, "in", "zero"), rel=1e-5)


def test_bad_arguments_say_what_was_expected():
    z, labels = random_batch(4, 8, 2, seed=0)
    with pytest.raises(ValueError, match=r"\(batch, dim\)"):
        supcon_loss(z[None], labels)
    with pytest.raises(ValueError, match="labels must be"):
        supcon_loss(z, labels[:3])
    with pytest.raises(ValueError, match="temperature"):
        supcon_loss(z, labels, 0.0)
    with pytest.raises(ValueError, match="form"):
        supcon_loss(z, labels, form="both")
    with pytest.raises(ValueError, match="no_positive"):
        supcon_loss(z, labels, no_positive="drop")
    with pytest.raises(ValueError, match="alpha"):
        hybrid_loss(z, torch.randn(4, 2), labels, alpha=1.5)
