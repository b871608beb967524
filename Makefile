# Entry points for a fresh clone: `make demo`, `make test` (everything) and `make test-fast`
# (the edit-test loop: no slow or parity tests). Each creates .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast lint clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(BIN)/.installed-test: $(BIN)/.installed pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/python -m cellssl_jax.demo --out demo_out

test: $(BIN)/.installed-test
	$(BIN)/ruff check cellssl_jax tests scripts
	$(BIN)/python -m pytest -q tests

test-fast: $(BIN)/.installed-test
	$(BIN)/ruff check cellssl_jax tests scripts
	$(BIN)/python -m pytest -q -m "not slow and not parity" tests

clean:
	rm -rf $(VENV) demo_out
