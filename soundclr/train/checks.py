"""What would stop a run late, checked before any work (:func:`preflight`): the settings, the device,
the results folder, the dataset's folder and metadata, and the model's weights.
"""
from __future__ import annotations

import os
from pathlib import Path

from .. import datasets
from ..config import INTERFACE_ENV, Config, ConfigError, setting_spelling
from ..data.layouts import (
    DatasetError,
    missing_folder,
    read_metadata,
    dataset_folder,
    dataset_rows,
)
from ..weights import WeightsError, download_file, imagenet_weights, imagenet_cache_path
from .runtime import resolve_device


# -- before the work: what would stop a run late is reported first ---------------------------------
class ResultsFolderError(RuntimeError):
    """The results folder cannot be written."""


def preflight(configs: Config | list[Config], *, results: Path | str | None = None, data: bool = True) -> None:
    """Check, before any decoding or training, what would otherwise stop a grid after the work has
    started, and raise the first problem found:

    - every setting (ConfigError), and the device (CUDA asked for but not available);
    - that ``results`` (a results or run folder) can be created and written (ResultsFolderError);
    - with ``data``, the dataset: its folder and metadata file, that ESC-10 rows are marked, and that
      the test (and validation) folds leave at least ``batch_size`` training clips (DatasetError,
      ConfigError); the synthetic dataset is generated on first use and not checked here;
    - the model's weights: a weights file that does not exist, ImageNet weights for the tiny
      backbone, or ImageNet weights that are not in the torch hub cache and cannot be downloaded
      into it now (WeightsError).

    Each check is cheap (the metadata file is read, no audio is decoded, no model is built); the
    same dataset or weights are checked once per process. Messages name the settings the way the
    user gives them (``--weights none`` at the command line, ``weights="none"`` in Python).
    """
    configs = [configs] if isinstance(configs, Config) else list(configs)
    for cfg in configs:
        cfg.resolved().validate()
        resolve_device(cfg.run.device)
    if results is not None:
        _check_writable(Path(results))
    for cfg in configs:
        if data:
            _check_dataset(cfg.resolved())
        _check_weights(cfg)


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".soundclr-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        how = "with --results FOLDER" if os.environ.get(INTERFACE_ENV) == "cli" else "(results=...)"
        raise ResultsFolderError(f"cannot write results into {folder} ({err.strerror or err}): make that folder writable, "
                                 f"or choose another results folder {how}") from None


_CHECKED: dict = {}


def _check_dataset(cfg: Config) -> None:
    d, r = cfg.data, cfg.run
    if datasets.get(d.dataset).generated:
        return                                    # generated on first use (soundclr.data.synthetic)
    folder = dataset_folder(cfg)
    key = ("data", d.dataset, str(folder.resolve()))
    meta = _CHECKED.get(key)
    if meta is None:
        if not folder.is_dir():
            raise missing_folder(d.dataset, folder)
        meta = read_metadata(d.dataset, folder)
        _CHECKED[key] = meta
    rows = dataset_rows(d.dataset, meta, folder)
    folds = sorted(set(meta.folds[rows].tolist()))
    for name, fold in (("test_fold", r.test_fold), ("val_fold", r.val_fold)):
        if fold is not None and fold not in folds:
            raise DatasetError(f"{name}={fold} is not a fold of {d.dataset}: the valid folds are {folds}")
    train = int((rows & (meta.folds != r.test_fold) & (meta.folds != (r.val_fold or 0))).sum())
    if train < cfg.optim.batch_size:
        raise ConfigError(f"setting batch_size={cfg.optim.batch_size} is not valid: the training folds of {d.dataset} hold "
                          f"only {train} clips (test fold {r.test_fold}); lower it ({setting_spelling('batch_size', train)} "
                          f"at most)")


def _check_weights(cfg: Config) -> None:
    backbone, weights = cfg.model.backbone, str(cfg.model.weights)
    instead = f"{setting_spelling('weights', 'none')} (or {setting_spelling('weights', 'PATH')} to a state dict)"
    if weights == "imagenet":
        if backbone == "tiny":
            raise WeightsError(f"there are no ImageNet weights for the 'tiny' backbone: set {instead}, or choose the "
                               f"backbone resnet18/resnet34/resnet50 ({setting_spelling('backbone', 'resnet50')}).")
        path = imagenet_cache_path(backbone)
        if ("weights", str(path)) in _CHECKED or path.exists():
            _CHECKED[("weights", str(path))] = True
            return
        url = imagenet_weights(backbone).url
        try:
            download_file(url, path, 10.0)
        except WeightsError:
            raise
        except Exception as err:                  # offline: URLError, OSError, TimeoutError
            raise WeightsError(
                f"ImageNet weights for {backbone} are not in the torch hub cache and could not be downloaded "
                f"({err}). Download {url} on a machine with internet and put the file {path.name} in {path.parent} "
                f"(that is torch.hub.get_dir()/checkpoints; set TORCH_HOME to move it), or set {instead}."
            ) from None
        _CHECKED[("weights", str(path))] = True
    elif weights != "none":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"{setting_spelling('weights', weights)}: no such file {path.resolve()}. Expected "
                               f"'imagenet', 'none' or the path of a state dict saved with torch.save.")
