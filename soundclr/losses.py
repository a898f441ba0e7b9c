"""The three losses of the paper: cross-entropy (Eq. 2), supervised contrastive (Eq. 3), hybrid (Eq. 4).

Notation follows the paper: a batch of N clips with labels y_1..y_N, their
L2-normalised projections z_1..z_N (``ModelOutput.projection``), temperature
tau, and for anchor i the positives P(i) = {p != i : y_p = y_i}.

Eq. 3 as the paper typesets it and what is implemented
--------------------------------------------------------
The paper writes::

    L_i = -(1 / N_{y_i}) * log( sum_j 1[y_i = y_j] exp(z_i.z_j / tau) / sum_{k != i} exp(z_i.z_k / tau) )

which puts the sum over positives *inside* the logarithm (Khosla et al.'s
"L_in") and, read literally, counts j = i among the positives. The paper
also says it uses Khosla et al.'s implementation, and so does its released
code: that is the "L_out" form, the one Khosla et al. recommend, with the
average over positives *outside* the logarithm and j = i excluded::

    L_i = -(1 / |P(i)|) * sum_{p in P(i)} log( exp(z_i.z_p / tau) / sum_{k != i} exp(z_i.z_k / tau) )

:func:`supcon_loss` computes L_out by default; ``form="in"`` gives Khosla
et al.'s L_in, ``-log( (1/|P(i)|) sum_{p in P(i)} exp(z_i.z_p/tau) / sum_{k != i} exp(z_i.z_k/tau) )``.

Anchors without a positive
--------------------------
A batch of 128 ESC-50 clips (50 classes) usually holds a few clips whose
class appears only once. L_i is undefined for them. The released code adds 0
for such anchors but still divides by N, so the loss shrinks as singletons
become more frequent. Here ``no_positive="exclude"`` (default) averages over
the anchors that have a positive, so the loss's scale does not depend on how
many singletons a batch happens to hold; ``no_positive="zero"`` reproduces
the released code. When no anchor has a positive the loss is 0 (with a
gradient path, so ``backward`` still works).

All three losses are computed in float32, also under bf16 autocast.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

FORMS = ("out", "in")
NO_POSITIVE = ("exclude", "zero")


def _check(z: torch.Tensor, labels: torch.Tensor, temperature: float, form: str, no_positive: str) -> None:
    if z.dim() != 2:
        raise ValueError(f"supcon_loss: z must be (batch, dim), found shape {tuple(z.shape)}; "
                         "pass ModelOutput.projection (one view per clip).")
    if labels.shape != (z.shape[0],):
        raise ValueError(f"supcon_loss: labels must be (batch,) = ({z.shape[0]},), found shape {tuple(labels.shape)}.")
    if not temperature > 0:
        raise ValueError(f"supcon_loss: temperature must be > 0, found {temperature}.")
    if form not in FORMS:
        raise ValueError(f"supcon_loss: form={form!r} is not valid: choose one of {', '.join(FORMS)}.")
    if no_positive not in NO_POSITIVE:
        raise ValueError(f"supcon_loss: no_positive={no_positive!r} is not valid: choose one of {', '.join(NO_POSITIVE)}.")


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float = 0.05, *,
                form: str = "out", no_positive: str = "exclude") -> torch.Tensor:
    """Supervised contrastive loss (paper Eq. 3, Khosla et al. 2020), one view per clip.

    Args:
        z: ``(batch, dim)`` projections, L2-normalised (z_i . z_j is then the cosine similarity).
        labels: ``(batch,)`` integer class labels.
        temperature: tau (the paper's 0.05).
        form: ``"out"`` (default, released code, Khosla et al.'s recommendation)
            or ``"in"`` (the log of the mean over positives; closer to the
            paper's typeset Eq. 3). See the module docstring.
        no_positive: anchors whose class appears once in the batch are
            ``"exclude"``-d from the mean (default) or count as ``"zero"``
            (the released code: the sum is divided by the batch size).

    Returns:
        A scalar float32 tensor: the mean of L_i over the anchors.

    Example::

        z = F.normalize(torch.randn(8, 64), dim=1)
        supcon_loss(z, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
    """
    _check(z, labels, temperature, form, no_positive)
    n = z.shape[0]
    if n < 2:  # no pair at all: nothing to contrast
        return z.sum() * 0.0
    # float32: similarities / 0.05 span +-20, and bf16 keeps only 3 significant digits.
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = z.float()
        self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
        # z_i . z_k / tau for every pair; k = i is left out of every sum, so mask it with -inf.
        logits = (z @ z.T / temperature).masked_fill(self_mask, float("-inf"))
        # log of each term's share of the denominator: log( exp(z_i.z_k/tau) / sum_{k != i} exp(z_i.z_k/tau) )
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        # P(i): same label, not i itself
        positives = (labels[:, None] == labels[None, :]) & ~self_mask
        n_positives = positives.sum(dim=1)
        has_positive = n_positives > 0
        if form == "out":
            # L_out: -(1/|P(i)|) sum_{p in P(i)} log_prob[i, p]  (where(): the -inf diagonal never meets a 0)
            per_anchor = -torch.where(positives, log_prob, 0.0).sum(dim=1) / n_positives.clamp(min=1)
        else:
            # L_in: -log( (1/|P(i)|) sum_{p in P(i)} exp(log_prob[i, p]) ); rows without a positive
            # get finite dummies so that neither the value nor its gradient becomes nan.
            pos_log_prob = log_prob.masked_fill(~positives, float("-inf"))
            pos_log_prob = torch.where(has_positive[:, None], pos_log_prob, 0.0)
            per_anchor = -(torch.logsumexp(pos_log_prob, dim=1) - n_positives.clamp(min=1).float().log())
            per_anchor = torch.where(has_positive, per_anchor, 0.0)
        # Mean over anchors; a tensor division, not a boolean index, so nothing waits on the GPU.
        if no_positive == "exclude":
            return per_anchor.sum() / has_positive.sum().clamp(min=1)
        return per_anchor.sum() / n


def cross_entropy_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (paper Eq. 2): -log softmax(logits)[y], averaged over the batch.

    Args:
        logits: ``(batch, n_classes)`` classifier outputs (``ModelOutput.logits``).
        labels: ``(batch,)`` integer class labels (the paper's one-hot vectors, as indices).

    Returns:
        A scalar float32 tensor.
    """
    return F.cross_entropy(logits.float(), labels)


def hybrid_loss(z: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, alpha: float = 0.5,
                temperature: float = 0.05, **supcon_options) -> torch.Tensor:
    """The hybrid loss (paper Eq. 4): alpha * SupCon(z) + (1 - alpha) * CE(logits).

    Args:
        z: ``(batch, projection_dim)`` L2-normalised projections.
        logits: ``(batch, n_classes)`` classifier outputs.
        labels: ``(batch,)`` integer class labels.
        alpha: weight of the contrastive term in [0, 1] (the paper's 0.5); 0 gives
            cross-entropy alone, 1 SupCon alone.
        temperature: tau of the contrastive term.
        supcon_options: ``form`` and ``no_positive``, passed to :func:`supcon_loss`.

    Returns:
        A scalar float32 tensor.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"hybrid_loss: alpha must lie in [0, 1], found {alpha}.")
    # Eq. 4
    return (alpha * supcon_loss(z, labels, temperature, **supcon_options)
            + (1.0 - alpha) * cross_entropy_loss(logits, labels))
