"""``python -m soundclr``: the command line (``soundclr.cli``)."""
import sys

from .cli import main

sys.exit(main())
