# Two entry points for a fresh machine: `make demo` and `make test`. Each creates .venv if missing,
# installs the pinned CPU torch first (an unpinned torch pulls gigabytes of CUDA packages), then grokscope.
PY ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test test-all install browser bench wheel-check docs clean

$(BIN)/.grokscope-installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test,ray,wandb,tensorboard,notebooks,png,tl,nnsight,digits,docs]'
	touch $@

install: $(BIN)/.grokscope-installed

browser: install
	bash scripts/install_browser.sh $(VENV)

demo: install
	$(BIN)/grokscope demo

test: install browser
	$(BIN)/python -m pytest -q

test-all: install browser
	$(BIN)/python -m pytest -q -m ''

wheel-check: install
	bash scripts/wheel_check.sh $(BIN)/python

docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d site

bench: install
	$(BIN)/python benchmarks/train_speed.py

clean:
	rm -rf $(VENV) runs site .pytest_cache
