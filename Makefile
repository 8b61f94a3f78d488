# The two commands of the README: `make run` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?=

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# SQLite under var/, SMTP on 127.0.0.1:2525, HTTP on 127.0.0.1:8025, mail to var/outbox
# (a maildir), SMS to var/sms.log. CONFIG=path/to/file.toml to use other settings.
run: $(VENV)/.installed
	$(BIN)/supportline $(if $(CONFIG),--config $(CONFIG)) db upgrade
	$(BIN)/supportline $(if $(CONFIG),--config $(CONFIG)) serve

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# Throughput beside same-run baselines (see bench/*.py); not part of `make test`.
bench: $(VENV)/.installed
	$(BIN)/python -m bench.intake_smtp
	$(BIN)/python -m bench.dispatch_email
	$(BIN)/python -m bench.webhook_sms

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
