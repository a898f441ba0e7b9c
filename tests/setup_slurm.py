"""Test set-up: make sure Debian's SLURM and MUNGE are installed for the SLURM test.

Run by `make test` before pytest (see tests/setup_packages.py). The daemons are started (and
stopped) by the test itself (tests/slurm_cluster.py).
"""
import os
import shutil
import sys

from setup_packages import ensure

if __name__ == "__main__":
    present = bool(shutil.which("sbatch")) and os.path.exists("/usr/sbin/slurmctld") and os.path.exists("/usr/sbin/munged")
    sys.exit(ensure(present, ["slurm-wlm", "munge"], "SLURM", "setup_slurm"))
