# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
HOST_EXE := build/host/edgepack-host.exe
HOST_SRC := $(shell find firmware_hosts/dotnet-iot -name '*.cs' 2>/dev/null | sort)

.PHONY: all venv sysdeps host test lint typecheck pytest demo bench clean

all: test

$(STAMP): requirements/runtime.txt requirements/dev.txt requirements/nodeps.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements/runtime.txt -r requirements/dev.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -r requirements/nodeps.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

venv: $(STAMP)

sysdeps:
	bash scripts/sysdeps.sh

host: $(HOST_EXE)

$(HOST_EXE): $(HOST_SRC) | sysdeps
	@if [ -z "$(HOST_SRC)" ]; then echo "no C# sources under firmware_hosts/dotnet-iot" >&2; exit 2; fi
	mkdir -p $(dir $@)
	mcs -nologo -langversion:7 -optimize+ -unsafe -warnaserror+ -target:exe -out:$@.tmp $(HOST_SRC) && mv $@.tmp $@

lint: $(STAMP)
	$(BIN)/ruff check edgepack tests benchmarks
	$(BIN)/ruff format --check edgepack tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) host
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/pytest -q $(PYTEST_ARGS)

test: lint typecheck pytest

demo: $(STAMP) host
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m edgepack.demo

bench: $(STAMP) host
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/quantization.py

clean:
	rm -rf build .mypy_cache .ruff_cache .pytest_cache
