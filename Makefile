# The two first commands of the README: `make demo` and `make test`.
# Each creates its own virtual environment and installs what it needs.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench system-deps clean

$(BIN)/.ready: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip uv 'nox>=2025.2.9'
	$(BIN)/uv pip install -q --python $(BIN)/python -e '.[otlp]' --group test --group lint
	touch $@

system-deps:
	./scripts/system-deps.sh

## demo: run examples/app.py under opentelemetry-instrument, spans printed to the console
demo: system-deps $(BIN)/.ready
	OTEL_PYTHON_DISTRO=gevent OTEL_SERVICE_NAME=gevent-demo \
	OTEL_TRACES_EXPORTER=console OTEL_METRICS_EXPORTER=none OTEL_LOGS_EXPORTER=none \
	$(BIN)/opentelemetry-instrument $(BIN)/python examples/app.py

## test: lint, type-check and the whole suite on the gevent x Python matrix
test: system-deps $(BIN)/.ready
	$(BIN)/nox

lint: $(BIN)/.ready
	$(BIN)/nox -s lint

bench: system-deps $(BIN)/.ready
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .nox .mypy_cache .ruff_cache .pytest_cache
