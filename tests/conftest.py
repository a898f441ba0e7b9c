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


@pytest.fixture(autouse=True, scope="module")
def registries_as_found():
    """What a test module registers (plugin schemes and claims, dataset folders) and names in the environment
    for its child processes is undone after the module: the next module sees the paper's schemes and claims
    and the built-in datasets only, as a fresh process does."""
    import os

    from soundclr import datasets, schemes
    from soundclr.analysis import claims
    saved = (dict(schemes._REGISTRY), dict(schemes._LOADED), dict(claims.CLAIMS), dict(datasets._REGISTRY),
             {k: os.environ.get(k) for k in (schemes.PLUGIN_ENV, datasets.FOLDER_ENV)})
    yield
    for registry, old in zip((schemes._REGISTRY, schemes._LOADED, claims.CLAIMS, datasets._REGISTRY), saved):
        registry.clear()
        registry.update(old)
    for key, value in saved[4].items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
