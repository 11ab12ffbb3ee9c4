# Two entry points: `make demo` (train + evaluate on the real sample) and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
DATA    ?= ../shared/data/arena_sample.csv
OUT     ?= runs/demo
# The pinned CPU wheel is installed first: a bare `torch` requirement would pull a multi-GB CUDA build.
TORCH   ?= torch==2.13.0

.PHONY: venv dev demo test clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

venv: $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e .

dev: $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev]'

demo: venv
	HF_HUB_OFFLINE=1 $(BIN)/arenapref train --data $(DATA) --output $(OUT) --valid-fraction 0.2
	HF_HUB_OFFLINE=1 $(BIN)/arenapref evaluate --model $(OUT) --data $(OUT)/valid.csv

test: dev
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs
