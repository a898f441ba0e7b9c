"""Test set-up: make sure Debian's headless Chromium is installed for the book's browser test.

Run by `make test` before pytest (see tests/setup_packages.py).
"""
import os
import shutil
import sys

from setup_packages import ensure

if __name__ == "__main__":
    present = bool(shutil.which("chromium")) or os.path.exists("/usr/bin/chromium")
    sys.exit(ensure(present, ["chromium", "fonts-dejavu-core"], "chromium", "setup_browser"))
