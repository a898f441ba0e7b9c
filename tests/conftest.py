"""Shared fixtures: one synthetic dataset per test session (generated once, in ESC-50's layout)."""
import pytest


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A data_root holding the default synthetic dataset (400 clips, 10 classes, 5 folds)."""
    from soundclr.synthetic import ensure_synthetic
    root = tmp_path_factory.mktemp("data")
    ensure_synthetic(root / "synthetic")
    return root


@pytest.fixture(scope="session")
def synthetic_bank(synthetic_root):
    """The synthetic dataset decoded at the quick preset's 16 kHz."""
    from soundclr import preset
    from soundclr.data import load_bank
    return load_bank(preset("quick", dataset="synthetic", data_root=str(synthetic_root)), progress=False)
