# The two commands for a fresh machine:
#   make book   -- builds the book on the embedded synthetic dataset (offline, CPU)
#   make test   -- installs everything it needs, then runs the tests
# Both create (or reuse) a local virtual environment in .venv, idempotently.

PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.soundclr-installed
DATASET ?= synthetic
PRESET  ?= quick

# glibc returns freed memory to the OS too eagerly for large conv batches on CPU;
# keeping it halves a ResNet-50 training step here.
export MALLOC_MMAP_THRESHOLD_ ?= 8589934592
export MALLOC_TRIM_THRESHOLD_ ?= 8589934592
export MALLOC_TOP_PAD_ ?= 1073741824

.PHONY: install book check-book test test-fast bench gpu-check lab clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11, 4) else "soundclr needs Python 3.11.4 or newer (the pinned numpy/pandas/scipy need 3.11; safe archive extraction needs the tarfile filters of 3.11.4), found " + sys.version.split()[0] + " at " + sys.executable + ": run make PYTHON=python3.12 (or the path of any Python 3.11.4 or newer)")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[book,test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

book: $(STAMP)
	$(VENV)/bin/soundclr reproduce --dataset $(DATASET) --preset $(PRESET)

test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) tests/setup_browser.py
	$(PY) tests/setup_slurm.py
	SOUNDCLR_REQUIRE_SLURM=1 $(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not book"

# After `make book`: every page, table and figure of the real book, opened in headless Chromium.
check-book: $(STAMP)
	$(PY) tests/setup_browser.py
	SOUNDCLR_REQUIRE_BOOK=1 $(PY) -m pytest -m book

# Jupyter Lab on the notebooks, from the project's environment (kernel "python3" = .venv). Lab's root is the project,
# so the notebooks' links to the book's pages (../book/*.md) open; it starts in notebooks/.
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=$(CURDIR) --LabApp.default_url=/lab/tree/notebooks

bench: $(STAMP)
	$(PY) benchmarks/pipeline.py
	$(PY) benchmarks/train_step.py
	$(PY) benchmarks/paper_cost.py
	$(PY) benchmarks/oversubscription.py

# On a machine with an NVIDIA GPU: CUDA-only tests, bf16 vs fp32, torch.compile, the paper step's speed and
# memory, two processes on one GPU, Table III's GPU-hours; one table to paste into an issue (at most 8 minutes).
# Without a GPU it says so and exits 0. Runs without the venv too: python3 benchmarks/gpu_check.py
gpu-check: $(STAMP)
	$(PY) benchmarks/gpu_check.py

clean:
	rm -rf _build book/generated
