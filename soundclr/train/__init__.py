"""Training: one run (:func:`train_run`), the step all code shares (:func:`train_step`), evaluation,
the device and DDP runtime, the run's record on disk, and the checks made before any work."""
from .checks import preflight
from .evaluation import evaluate
from .loop import train_run
from .step import lr_factor, make_optimizer, model_step, scheme_loss, train_step

__all__ = ["train_run", "train_step", "model_step", "scheme_loss", "lr_factor", "make_optimizer", "evaluate", "preflight"]
