"""One noise model: the variance components of a comparison, estimated once from the runs' per-clip correctness.

Every power, size and cost figure of the book is simulated from this model (:mod:`soundclr.analysis.simulate`)
and decided by the ledger's own rule (:mod:`soundclr.analysis.rule`).

**The model** (a probit mixed model with crossed random effects, fitted by the method of moments). Run j of side
s (a scheme, or a variant), trained on fold f's training set, gets test clip i right when its latent score is
above zero::

    L = c_s + t_sf + a_s u_i + w_si + g_sfj + e_sfji        (u, w, g, e independent normals)

- ``u_i`` (variance 1): how hard clip i is, for every side; ``a_s`` its loading on side s;
- ``w_si``: how hard clip i is for side s alone (the clip x side term: it makes two sides differ clip by clip);
- ``g_sfj``: the run's shift, the same on all its clips (a seed that is better everywhere);
- ``e``: what is left, independent from clip to clip and run to run (the seed's clip-by-clip noise);
- ``c_s``: side s's accuracy, ``Phi(c_s)``; ``a_s^2 + var(w) + var(g) + var(e) = 1``;
- ``t_sf``: the training-set term, side s trained on fold f's training set (the side x fold term; a fold
  effect common to every side cancels in a difference). It is kept in accuracy points (``train``, the
  variance of a pair's fold difference it causes) and turned into a shift of ``c_s`` when simulating.
  Training sets of one cross-validation overlap, so part of it is shared by all the folds of one dataset
  (``shared``: that part as a multiple of the fold-to-fold part; the Nadeau-Bengio argument puts it at
  n_test / n_train, ``studies/nadeau_bengio.py`` measures it on independent draws).

**The moments** (each a bivariate normal probability ``Phi2``; all from runs of the same fold):

- two runs of side s disagree on a clip with probability ``q_ss = 2 (acc_s - Phi2(c_s, c_s; r_same_s))``,
  ``r_same_s = a_s^2 + var(w_s)``;
- a run of s and one of s' disagree with ``q_ss' = acc_s + acc_s' - 2 Phi2(c_s, c_s'; a_s a_s')``;
- the variance of a run's accuracy over seeds on n clips is
  ``(acc - Phi2(c, c; r_same)) / n + (1 - 1/n) (Phi2(c, c; r_run) - acc^2)``, ``r_run = var(g)``;
- the variance of a pair's fold differences over folds is ``train`` plus the noise floor of
  :mod:`soundclr.analysis.rule` (clips and seeds): ``train`` is the remainder (the raw value is kept; a
  negative one counts as zero).

Each is solved for its parameter (``brentq``); ``a_s`` from the pairs' cross correlations ``a_s a_s' =
rho_ss'`` by least squares on the logarithms (two sides: an even split). With one run per fold a side's
``r_same`` and ``r_run`` cannot be measured and are borrowed (from the main grid's run of the same scheme;
the model records it). Each estimate is checked in the tests against simulated runs of known components.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from itertools import combinations
from typing import Mapping, Sequence

import numpy as np
from scipy.optimize import brentq
from scipy.special import owens_t
from scipy.stats import multivariate_normal, norm

from .rule import floor_variance, fold_terms          # the ledger's floor: the same estimate as the verdicts

EPS = 1e-6


def phi2(h: float, k: float, rho: float) -> float:
    """``P(X < h, Y < k)`` for standard normals with correlation ``rho`` (Owen's T for h = k, else scipy)."""
    rho = float(np.clip(rho, -1 + 1e-12, 1 - 1e-12))
    if abs(h - k) < 1e-15:
        return float(norm.cdf(h) - 2 * owens_t(h, math.sqrt((1 - rho) / (1 + rho))))
    return float(multivariate_normal(mean=[0.0, 0.0], cov=[[1.0, rho], [rho, 1.0]]).cdf([h, k]))


def _solve(f, lo: float, hi: float) -> float:
    """The root of the increasing function ``f`` on [lo, hi], or the nearer end where it has none."""
    a, b = f(lo), f(hi)
    if a >= 0:
        return lo
    if b <= 0:
        return hi
    return float(brentq(f, lo, hi, xtol=1e-9))


def r_same_from(acc: float, discord: float) -> float:
    """The latent correlation of two runs of one side on one clip, from their disagreement rate."""
    c = norm.ppf(acc)
    target = acc - discord / 2
    return _solve(lambda r: phi2(c, c, r) - target, 0.0, 1 - EPS)


def r_cross_from(acc_a: float, acc_b: float, discord: float) -> float:
    """The latent correlation of runs of two sides on one clip, from their disagreement rate."""
    ca, cb = norm.ppf(acc_a), norm.ppf(acc_b)
    target = (acc_a + acc_b - discord) / 2
    return _solve(lambda r: phi2(ca, cb, r) - target, 0.0, 1 - EPS)


def seed_variance(acc: float, r_same: float, r_run: float, n: float) -> float:
    """The variance over seeds of a run's accuracy on n clips (a fraction squared)."""
    c = norm.ppf(acc)
    return (acc - phi2(c, c, r_same)) / n + (1 - 1 / n) * (phi2(c, c, r_run) - acc ** 2)


def r_run_from(acc: float, r_same: float, var: float, n: float) -> float:
    """The latent correlation of two clips of one run (the run's shift), from its accuracy's seed variance;
    zero where that variance is at or below what independent clips give (the model has no negative part)."""
    return _solve(lambda r: seed_variance(acc, r_same, r, n) - var, 0.0, max(0.0, 1 - r_same - EPS))


@dataclass(frozen=True)
class SideNoise:
    """One side's part of the model: accuracy (a fraction), ``r_same``, ``r_run``, the loading ``a`` on the
    shared clip difficulty, the variance ``train`` (points squared) of its training-set term, and where
    ``r_same``/``r_run`` came from (``measured`` or ``borrowed: ...``)."""
    acc: float
    r_same: float
    r_run: float
    a: float
    train: float = 0.0
    source: str = "measured"

    @property
    def c(self) -> float:
        return float(norm.ppf(min(max(self.acc, 1e-6), 1 - 1e-6)))

    @property
    def w(self) -> float:
        """The variance of the clip x side term."""
        return max(0.0, self.r_same - self.a ** 2)

    @property
    def e(self) -> float:
        return max(0.0, 1.0 - self.r_same - self.r_run)


@dataclass(frozen=True)
class NoiseModel:
    """The fitted model of a comparison: ``sides`` by name, the fold design it was fitted on (``folds``,
    ``clips`` per fold), ``shared`` (the part of the training-set term common to every fold of a dataset, as a
    multiple of its fold-to-fold part), and the moments it was fitted from (``moments``: per side and pair, the
    measured disagreement, seed variance and raw training-set remainder)."""
    sides: Mapping[str, SideNoise]
    folds: int
    clips: float
    shared: float = 0.0
    moments: Mapping[str, float] = field(default_factory=dict)

    def with_accuracy(self, acc: Mapping[str, float]) -> "NoiseModel":
        """The same latent structure at other accuracies (fractions): how the model carries to another dataset
        or a planted effect."""
        return replace(self, sides={s: replace(v, acc=float(acc.get(s, v.acc))) for s, v in self.sides.items()})

    def terms(self, left: str, right: str, *, clips: float | None = None, seeds: float = 1) -> dict:
        """The variance of one fold's difference ``left - right`` (points squared), by term: ``clip`` (the clips
        of a fold of ``clips``), ``seed`` (one run of each side, divided by ``seeds``), ``train`` (fold to fold)
        and ``shared`` (common to the folds of one dataset). From the model's moments, by numerical integration
        over the clip terms."""
        n = self.clips if clips is None else clips
        a, b = self.sides[left], self.sides[right]
        seed = 1e4 * (seed_variance(a.acc, a.r_same, a.r_run, n) + seed_variance(b.acc, b.r_same, b.r_run, n))
        clip = 1e4 * clip_variance(a, b) / n
        train = a.train + b.train
        return {"clip": clip, "seed": seed / seeds, "train": train, "shared": train * self.shared}


def clip_variance(a: SideNoise, b: SideNoise, points: int = 48) -> float:
    """The variance over clips of the two sides' per-clip accuracy difference ``p_a(i) - p_b(i)`` (fractions
    squared: the clip term of a fold's difference is this over the clips), by Gauss-Hermite quadrature over the
    shared and the side-specific clip terms."""
    x, wq = np.polynomial.hermite_e.hermegauss(points)
    wq = wq / wq.sum()
    sa, sb = math.sqrt(a.r_run + a.e), math.sqrt(b.r_run + b.e)
    # p_s(u, w) = Phi((c_s + a_s u + w_s) / sqrt(r_run + e)), over u (shared) and w_a, w_b (independent)
    u = x[:, None, None]
    wa = math.sqrt(a.w) * x[None, :, None]
    wb = math.sqrt(b.w) * x[None, None, :]
    pa = norm.cdf((a.c + a.a * u + wa) / max(sa, 1e-9))
    pb = norm.cdf((b.c + b.a * u + wb) / max(sb, 1e-9))
    weight = wq[:, None, None] * wq[None, :, None] * wq[None, None, :]
    diff = pa - pb
    mean = float((weight * diff).sum())
    return float((weight * diff ** 2).sum()) - mean ** 2


# -- estimating the moments from runs ----------------------------------------------------------------
def _pairs_discord(x: np.ndarray, y: np.ndarray | None = None) -> tuple[float, int]:
    """Mean disagreement over pairs of runs: within ``x`` (r, n) when ``y`` is None, else between x and y."""
    if y is None:
        r = x.shape[0]
        if r < 2:
            return math.nan, 0
        s = x.sum(axis=0)                     # per clip: runs right
        # pairs disagreeing on a clip: s (r - s); over r (r - 1) / 2 pairs
        return float((s * (r - s)).sum() / (x.shape[1] * r * (r - 1) / 2)), r * (r - 1) // 2
    sx, sy = x.sum(axis=0), y.sum(axis=0)
    rx, ry = x.shape[0], y.shape[0]
    return float((sx * (ry - sy) + (rx - sx) * sy).sum() / (x.shape[1] * rx * ry)), rx * ry


def side_moments(folds: Sequence[np.ndarray]) -> dict:
    """One side's measured moments over its folds (``folds[f]``: (runs, clips) correctness): ``acc`` (fraction),
    ``discord`` (two runs disagree on a clip, pooled over pairs), ``var`` (the seed variance of a run's accuracy,
    a fraction squared, pooled over the folds with two runs or more), ``clips`` (mean per fold), ``runs``."""
    acc = float(np.mean([f.mean() for f in folds]))
    disc = [(_pairs_discord(f)) for f in folds]
    pairs = sum(p for _, p in disc)
    discord = sum(q * p for q, p in disc if p) / pairs if pairs else math.nan
    var = [(f.mean(axis=1).var(ddof=1), f.shape[0] - 1) for f in folds if f.shape[0] > 1]
    df = sum(d for _, d in var)
    return {"acc": acc, "discord": discord, "var": sum(v * d for v, d in var) / df if df else math.nan,
            "clips": float(np.mean([f.shape[1] for f in folds])), "runs": float(np.mean([f.shape[0] for f in folds]))}


def fit(sides: Mapping[str, Sequence[np.ndarray]], *, train_pairs: Sequence[tuple[str, str]] = (),
        borrow: Mapping[str, SideNoise] | None = None, shared: float = 0.0, ratio: float = 0.25) -> NoiseModel:
    """Fit the model to runs: ``sides[name][f]`` is fold f's (runs, clips) per-clip correctness of that side
    (every side holds the same folds and clips). ``train_pairs``: the pairs whose fold differences estimate the
    training-set term (by the method of moments, with the ledger's own noise floor). ``borrow[name]``: r_same and
    r_run for a side with one run per fold. ``shared``: the training term's shared part (see the module
    docstring)."""
    borrow = dict(borrow or {})
    names = list(sides)
    k = len(next(iter(sides.values())))
    moments: dict[str, float] = {}
    parts: dict[str, dict] = {}
    for s in names:
        m = side_moments(sides[s])
        moments.update({f"{s}.acc": m["acc"], f"{s}.discord": m["discord"], f"{s}.var": m["var"]})
        if math.isfinite(m["discord"]) and math.isfinite(m["var"]):
            rs = r_same_from(m["acc"], m["discord"])
            rr = r_run_from(m["acc"], rs, m["var"], m["clips"])
            source = "measured"
        elif s in borrow:
            rs, rr, source = borrow[s].r_same, borrow[s].r_run, borrow[s].source if borrow[s].source != "measured" \
                else "borrowed"
        else:
            raise ValueError(f"side {s!r} has one run per fold: its seed terms cannot be measured; pass borrow={{'{s}': "
                             "...}} (e.g. the main grid's model of the same scheme)")
        parts[s] = {"acc": m["acc"], "r_same": rs, "r_run": rr, "source": source, "clips": m["clips"]}
    # loadings on the shared clip difficulty, from each pair's cross correlation
    logs, rows = [], []
    for s, t in combinations(names, 2):
        q, _ = zip(*[_pairs_discord(sides[s][f], sides[t][f]) for f in range(k)])
        q = float(np.mean(q))
        moments[f"{s}|{t}.discord"] = q
        rc = r_cross_from(parts[s]["acc"], parts[t]["acc"], q)
        bound = math.sqrt(parts[s]["r_same"] * parts[t]["r_same"])
        rho = min(max(rc, 1e-6), bound) / max(bound, 1e-12)        # the shared share of the two clip terms
        rows.append((names.index(s), names.index(t)))
        logs.append(math.log(max(rho, 1e-6)))
    loading = {s: math.sqrt(parts[s]["r_same"]) for s in names}
    if rows:
        A = np.zeros((len(rows), len(names)))
        for j, (x, y) in enumerate(rows):
            A[j, x] = A[j, y] = 1.0
        sol = np.minimum(np.linalg.lstsq(A, np.array(logs), rcond=None)[0], 0.0)     # log of each side's share
        loading = {s: math.sqrt(parts[s]["r_same"]) * math.exp(sol[i]) for i, s in enumerate(names)}
    # the training-set term of each side, from the pairs' fold differences (method of moments)
    train = {s: 0.0 for s in names}
    pair_train = {}
    for left, right in train_pairs:
        terms = fold_terms([sides[left][f] for f in range(k)], [sides[right][f] for f in range(k)], clips=True)
        d = terms["d"][0]
        raw = float(d.var(ddof=1) - floor_variance(terms)[0]) if k > 1 else math.nan
        moments[f"{left}|{right}.train"] = raw
        pair_train[(left, right)] = max(raw, 0.0) if math.isfinite(raw) else 0.0
    if pair_train:
        A = np.zeros((len(pair_train), len(names)))
        for j, (x, y) in enumerate(pair_train):
            A[j, names.index(x)] = A[j, names.index(y)] = 1.0
        sol = np.maximum(np.linalg.lstsq(A, np.array(list(pair_train.values())), rcond=None)[0], 0.0)
        train = {s: float(sol[i]) for i, s in enumerate(names)}
    clips = float(np.mean([p["clips"] for p in parts.values()]))
    return NoiseModel(sides={s: SideNoise(acc=parts[s]["acc"], r_same=parts[s]["r_same"], r_run=parts[s]["r_run"],
                                          a=loading[s], train=train[s], source=parts[s]["source"]) for s in names},
                      folds=k, clips=clips, shared=shared, moments=moments)
