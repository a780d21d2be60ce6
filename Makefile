# Roost front door: `make serve` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# slixmpp 1.8 (Debian's poezio) beside the current one, for tests/interop/test_slixmpp_compat.py
SLIX18 := $(VENV)/compat/slixmpp-1.8

.PHONY: serve test lint typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,fast]'
	touch $(STAMP)

$(SLIX18)/.installed: $(STAMP)
	$(BIN)/pip install -q --no-deps --target $(SLIX18) 'slixmpp==1.8.3'
	touch $@

serve: $(STAMP)
	$(BIN)/roost serve $(if $(CONFIG),--config $(CONFIG),)

test: $(STAMP) $(SLIX18)/.installed
	@command -v prosody >/dev/null || echo "note: prosody is not installed; the Prosody federation test is skipped (apt-get install prosody)"
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
