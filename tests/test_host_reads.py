"""GPU readiness: the training step reads no tensor value on the host, and torch.compile
changes nothing but speed.

On a GPU every host read of a tensor value (``.item()``, ``.tolist()``, ``.cpu()``,
``bool(t)``, ...) makes the host wait for the device. We count the calls that the
library's own code makes during ``train_run`` at batch 8 and at batch 32 (4x the
steps): whatever grows with the number of steps is a read in the step."""
import sys
from pathlib import Path

import pytest
import torch

from soundclr import preset
from soundclr.train import train_run

SOUNDCLR = str(Path(__import__("soundclr").__file__).resolve().parent)
READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__")


class HostReads:
    """Counts calls of the reading methods of torch.Tensor made from soundclr's code."""

    def __init__(self, monkeypatch):
        self.count = 0
        self.where: dict[str, int] = {}
        for name in READS:
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._wrap(name, original))

    def _wrap(self, name, original):
        def counted(t, *args, **kwargs):
            caller = sys._getframe(1)
            if caller.f_code.co_filename.startswith(SOUNDCLR):
                self.count += 1
                key = f"{Path(caller.f_code.co_filename).name}:{caller.f_lineno} {name}"
                self.where[key] = self.where.get(key, 0) + 1
            return original(t, *args, **kwargs)
        return counted


def reads_and_steps(scheme, batch, root, bank, tmp, monkeypatch):
    cfg = preset("quick", dataset="synthetic", data_root=str(root), scheme=scheme, epochs=2, warmup_epochs=1,
                 stage2_epochs=1, batch_size=batch, stage2_start="best_test")
    with monkeypatch.context() as m:
        counter = HostReads(m)
        train_run(cfg, tmp / f"{scheme}-{batch}", bank=bank, progress=False)
    n_train = int((bank.folds != 1).sum())
    steps = (n_train // batch) * (cfg.optim.epochs + (cfg.optim.stage2_epochs if scheme == "supcon" else 0))
    return counter, steps


@pytest.mark.parametrize("scheme", ["ce", "supcon", "hybrid"])
def test_fewer_than_one_host_read_per_training_step(scheme, synthetic_root, synthetic_bank, tmp_path, monkeypatch):
    small, steps_small = reads_and_steps(scheme, 32, synthetic_root, synthetic_bank, tmp_path, monkeypatch)
    large, steps_large = reads_and_steps(scheme, 8, synthetic_root, synthetic_bank, tmp_path, monkeypatch)
    assert steps_large == 4 * steps_small
    assert small.count > 0, "the counter saw no read at all: it is not counting"
    per_step = (large.count - small.count) / (steps_large - steps_small)
    grew = {k: v - small.where.get(k, 0) for k, v in large.where.items() if v > small.where.get(k, 0)}
    assert per_step < 1.0, f"{per_step:.2f} host reads per extra training step; where: {grew}"
    assert per_step < 0.05, f"a read in the step path, even if not every step: {grew}"


def test_the_counter_sees_a_read_in_the_step(synthetic_root, synthetic_bank, tmp_path, monkeypatch):
    """The counting is not blind: a loss.item() per step (what the loop did before) is counted."""
    import soundclr.losses as losses
    # a cross-entropy that reads its value, compiled as if it were library code
    namespace = {"original": losses.cross_entropy_loss}
    exec(compile("def with_item(logits, labels):\n    loss = original(logits, labels)\n    loss.item()\n    return loss\n",
                 f"{SOUNDCLR}/losses_with_item.py", "exec"), namespace)
    monkeypatch.setattr(losses, "cross_entropy_loss", namespace["with_item"])
    small, steps_small = reads_and_steps("ce", 32, synthetic_root, synthetic_bank, tmp_path, monkeypatch)
    large, steps_large = reads_and_steps("ce", 8, synthetic_root, synthetic_bank, tmp_path, monkeypatch)
    assert (large.count - small.count) / (steps_large - steps_small) >= 1.0


@pytest.mark.slow
def test_compile_gives_the_same_training(synthetic_root, synthetic_bank, tmp_path):
    """torch.compile (setting compile) is an execution setting: same run identity, same losses."""
    cfg = preset("quick", dataset="synthetic", data_root=str(synthetic_root), scheme="hybrid", epochs=1, warmup_epochs=1,
                 batch_size=32, contrastive_stretch=1.0, lr=1e-4)   # a small rate: rounding differences stay small
    eager = train_run(cfg, tmp_path / "eager", bank=synthetic_bank, progress=False)
    compiled = train_run(cfg.override(compile=True), tmp_path / "compiled", bank=synthetic_bank, progress=False)
    assert cfg.override(compile=True).identity() == cfg.identity()
    import json
    a = json.loads((tmp_path / "eager" / "metrics.jsonl").read_text().splitlines()[0])
    b = json.loads((tmp_path / "compiled" / "metrics.jsonl").read_text().splitlines()[0])
    # the same loss up to float rounding (kernel fusion reorders sums; near chance a test-fold
    # accuracy after one epoch is too fragile to compare)
    assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)
    assert compiled["identity"] == eager["identity"]
