"""Test set-up helper: install Debian packages a test needs, when they are missing and we are root.

Used by tests/setup_browser.py (Chromium) and tests/setup_slurm.py (SLURM and MUNGE), which
`make test` runs before pytest. Never fails the run by itself: the test that needs a package
reports clearly what is missing.
"""
import os
import shutil
import subprocess
import sys


def ensure(present: bool, packages: list[str], what: str, label: str) -> int:
    if present:
        return 0
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print(f"{label}: {what} is not installed; install Debian's {' and '.join(packages)} for the test", file=sys.stderr)
        return 0
    print(f"{label}: installing Debian's {' '.join(packages)} ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, stdout=subprocess.DEVNULL)
    r = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
                       env=env, check=False, stdout=subprocess.DEVNULL)
    if r.returncode != 0:
        print(f"{label}: apt-get install {' '.join(packages)} failed; the test will report it", file=sys.stderr)
    return 0
