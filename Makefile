# Set-up and the two everyday jobs. `make demo` and `make test` each install what they need first.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch, from PyTorch's CPU index, installed before the project so that pip never
# pulls the CUDA packages (PyPI's Linux torch depends on them) on a machine without a GPU. On a GPU
# machine: make TORCH=torch TORCH_INDEX=https://pypi.org/simple ... (or your CUDA build's index).
TORCH ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
BIN := $(VENV)/bin

.PHONY: install demo test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "vidiff needs Python 3.11 or newer (diffusers and transformers do); $(PYTHON) is " + sys.version.split()[0] + ": give another with make PYTHON=python3.12 ...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --index-url "$(TORCH_INDEX)" "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test,ray,ui]"
	touch $@

demo: install
	$(BIN)/vidiff demo --overwrite

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) vidiff-demo.mp4 vidiff-demo.preview.mp4 .pytest_cache
