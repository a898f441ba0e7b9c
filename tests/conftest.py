"""Shared fixtures: one synthetic dataset per test session (generated once, in ESC-50's layout), and a
registry of training processes private to the session."""
import pytest


@pytest.fixture(scope="session", autouse=True)
def private_process_registry(tmp_path_factory):
    """Training processes size their thread pools by the soundclr processes registered on the host
    (soundclr.runs.threads.register); the tests compare floating-point sums that depend on the thread count,
    so they must not see processes of other sessions on the same machine."""
    import os

    from soundclr.runs.threads import REGISTRY_ENV
    old = os.environ.get(REGISTRY_ENV)
    os.environ[REGISTRY_ENV] = str(tmp_path_factory.mktemp("registry"))
    yield
    if old is None:
        os.environ.pop(REGISTRY_ENV, None)
    else:
        os.environ[REGISTRY_ENV] = old


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A data_root holding the default synthetic dataset (400 clips, 10 classes, 5 folds)."""
    from soundclr.data.synthetic import ensure_synthetic
    root = tmp_path_factory.mktemp("data")
    ensure_synthetic(root / "synthetic")
    return root


@pytest.fixture(scope="session")
def synthetic_bank(synthetic_root):
    """The synthetic dataset decoded at the quick preset's 16 kHz."""
    from soundclr import preset
    from soundclr.data.bank import load_bank
    return load_bank(preset("quick", dataset="synthetic", data_root=str(synthetic_root)), progress=False)
