# Set-up and the two everyday jobs. `make demo` and `make test` each install what they need first.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch, installed before the project so that pip never pulls the CUDA packages
# on a machine without a GPU. On a GPU machine: make TORCH="torch" (or your CUDA build) ...
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install demo test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test,ray,ui]"
	touch $@

demo: install
	$(BIN)/vidiff demo --overwrite

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) vidiff-demo.mp4 .pytest_cache
