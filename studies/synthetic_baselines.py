"""How hard is the synthetic set? Simple baselines on the log-mel features, for the book's page on the data.

    .venv/bin/python studies/synthetic_baselines.py      # about a minute on a CPU

Writes ``studies/synthetic_baselines.json`` and the numbers of ``book/synthetic.md`` (between its
markers). On the book's draw (``synthetic_draw=0``) and its five folds, each fold tested once, with
the quick preset's evaluation input (8 kHz, 32 mel bands, 79 frames; no augmentation):

- chance: one tenth;
- nearest class mean: each test clip goes to the class whose mean feature vector (over the training
  folds) is closest in cosine; features: each band's mean and standard deviation over time (64
  numbers), standardised on the training folds;
- logistic regression on the same 64 features (scikit-learn's defaults: L2, C = 1; nothing tuned);
- for each confusable pair of ``soundclr.data.sounds.CONFUSABLE_PAIRS``, how often the logistic
  regression calls one of the pair the other, against how often it confuses any other two classes.

None of these baselines has a setting chosen on the test folds (each uses the library's defaults), so
scoring them on the book's folds chooses nothing.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from soundclr import preset  # noqa: E402
from soundclr.audio.pipeline import Pipeline  # noqa: E402
from soundclr.data.bank import load_bank  # noqa: E402
from soundclr.data.sounds import CONFUSABLE_PAIRS  # noqa: E402

sys.path.insert(0, str(ROOT / "studies"))
from common import write_section  # noqa: E402

OUT_JSON = ROOT / "studies" / "synthetic_baselines.json"
PAGE = ROOT / "book" / "synthetic.md"
MARKERS = ("<!-- baselines: written by studies/synthetic_baselines.py -->", "<!-- /baselines -->")


def features() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(clips, 64) band means and sds of the evaluation log-mel, labels, folds, class names."""
    cfg = preset("quick", dataset="synthetic", device="cpu", data_root=str(ROOT / "data")).resolved()
    bank = load_bank(cfg, progress=False)
    pipe = Pipeline.from_config(cfg).eval()
    with torch.no_grad():
        x = pipe(*bank.batch(torch.arange(len(bank))))[:, 0]          # (clips, mels, frames)
    feats = torch.cat([x.mean(-1), x.std(-1)], dim=1).numpy()
    return feats, bank.labels.numpy(), bank.folds.numpy(), list(bank.class_names)


def evaluate(x: np.ndarray, y: np.ndarray, folds: np.ndarray, n_classes: int) -> dict:
    from sklearn.linear_model import LogisticRegression
    per_fold = {"nearest class mean": [], "logistic regression": []}
    confusion = np.zeros((n_classes, n_classes))
    for f in sorted(set(folds)):
        train, test = folds != f, folds == f
        mu, sd = x[train].mean(0), x[train].std(0) + 1e-8
        xtr, xte = (x[train] - mu) / sd, (x[test] - mu) / sd
        means = np.stack([xtr[y[train] == c].mean(0) for c in range(n_classes)])
        unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)       # noqa: E731
        nearest = (unit(xte) @ unit(means).T).argmax(1)
        per_fold["nearest class mean"].append(100 * float((nearest == y[test]).mean()))
        model = LogisticRegression(max_iter=5000).fit(xtr, y[train])
        pred = model.predict(xte)
        per_fold["logistic regression"].append(100 * float((pred == y[test]).mean()))
        for t, p in zip(y[test], pred):
            confusion[t, p] += 1
    return {"accuracy": {k: {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)), "folds": v}
                         for k, v in per_fold.items()},
            "confusion": confusion.astype(int).tolist()}


def pair_rates(confusion: np.ndarray, names: list[str]) -> dict:
    """Per confusable pair: the share of the pair's clips called the other one; and the mean share for
    every other ordered pair of classes (what an unconfusable pair's rate looks like)."""
    rates = confusion / confusion.sum(1, keepdims=True)
    pairs = {f"{names[a]} / {names[b]}": float(100 * (rates[a, b] + rates[b, a]) / 2) for a, b in CONFUSABLE_PAIRS}
    marked = {(a, b) for a, b in CONFUSABLE_PAIRS} | {(b, a) for a, b in CONFUSABLE_PAIRS}
    other = [rates[i, j] for i in range(len(names)) for j in range(len(names)) if i != j and (i, j) not in marked]
    return {"pairs": pairs, "other": float(100 * np.mean(other))}


def section(r: dict) -> str:
    acc = r["accuracy"]
    rows = ["| model (nothing tuned) | accuracy over the 5 test folds (%) |", "|---|---|",
            "| chance | 10.00 |"]
    rows += [f"| {k} on the 64 band statistics | {v['mean']:.2f} ± {v['sd']:.2f} |" for k, v in acc.items()]
    pairs = "; ".join(f"{k} {v:.1f} %" for k, v in r["pair_rates"]["pairs"].items())
    return "\n".join([
        MARKERS[0],
        *rows,
        "",
        "(mean ± standard deviation over the five test folds; `studies/synthetic_baselines.py`, "
        f"{r['date']}.) How often the logistic regression calls a clip of a confusable pair the other one of "
        f"the pair: {pairs}; for any other two classes, {r['pair_rates']['other']:.1f} % on average.",
        MARKERS[1]])


def main() -> int:
    x, y, folds, names = features()
    r = evaluate(x, y, folds, len(names))
    r["pair_rates"] = pair_rates(np.array(r["confusion"], dtype=float), names)
    r.update(date=time.strftime("%Y-%m-%d"), classes=names, clips=int(len(y)), features="band mean and sd, 32 mel bands")
    OUT_JSON.write_text(json.dumps(r, indent=1) + "\n")
    write_section(PAGE, MARKERS, section(r))
    for k, v in r["accuracy"].items():
        print(f"{k}: {v['mean']:.2f} ± {v['sd']:.2f}")
    print("confusable pairs:", r["pair_rates"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
