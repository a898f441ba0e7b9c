"""Test set-up: make sure Debian's SLURM and MUNGE are installed for the SLURM test.

Run by `make test` before pytest, like tests/setup_browser.py. Installs the `slurm-wlm`
and `munge` packages with apt-get when they are missing and we are root; otherwise says
what to do. Never fails the run by itself: the SLURM test reports what is missing. The
daemons are started (and stopped) by the test itself (tests/slurm_cluster.py).
"""
import os
import shutil
import subprocess
import sys


def main() -> int:
    if shutil.which("sbatch") and os.path.exists("/usr/sbin/slurmctld") and os.path.exists("/usr/sbin/munged"):
        return 0
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print("setup_slurm: SLURM is not installed; install Debian's `slurm-wlm` and `munge` packages for the SLURM test",
              file=sys.stderr)
        return 0
    print("setup_slurm: installing Debian's slurm-wlm and munge for the SLURM test ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, stdout=subprocess.DEVNULL)
    r = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "slurm-wlm", "munge"],
                       env=env, check=False, stdout=subprocess.DEVNULL)
    if r.returncode != 0:
        print("setup_slurm: apt-get install slurm-wlm munge failed; the SLURM test will report it", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
