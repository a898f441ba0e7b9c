"""Test set-up: make sure Debian's headless Chromium is installed for the book's browser test.

Run by `make test` before pytest. Installs the `chromium` package with apt-get
when it is missing and we are root; otherwise says what to do. Never fails the
run by itself: the browser test reports a missing browser clearly.
"""
import os
import shutil
import subprocess
import sys


def main() -> int:
    if shutil.which("chromium") or os.path.exists("/usr/bin/chromium"):
        return 0
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print("setup_browser: chromium is not installed; install Debian's `chromium` package for the book's browser test", file=sys.stderr)
        return 0
    print("setup_browser: installing Debian's chromium for the book's browser test ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, stdout=subprocess.DEVNULL)
    r = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium", "fonts-dejavu-core"],
                       env=env, check=False, stdout=subprocess.DEVNULL)
    if r.returncode != 0:
        print("setup_browser: apt-get install chromium failed; the browser test will report it", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
