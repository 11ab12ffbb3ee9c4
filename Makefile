# Two entry points: `make demo` (train + evaluate on the real sample) and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
DATA    ?= ../shared/data/arena_sample.csv
OUT     ?= runs/demo
# The recipe with the best grouped-CV log loss on the sample (README "Choosing the recipe"); any `--model` name works.
MODEL   ?= hybrid
# The pinned CPU wheel is installed first: a bare `torch` requirement would pull a multi-GB CUDA build.
TORCH   ?= torch==2.13.0
# Extra `arenapref train` flags can be passed as DEMO_FLAGS="...".
DEMO_FLAGS ?=

.PHONY: venv dev browser demo test clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

venv: $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e .

dev: $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev]'

# Hold out 20% of DATA (no prompt on both sides), train on the rest, score the held-out part.
demo: venv
	HF_HUB_OFFLINE=1 $(BIN)/arenapref split --data $(DATA) --output $(OUT)/data --holdout-fraction 0.2
	HF_HUB_OFFLINE=1 $(BIN)/arenapref train --data $(OUT)/data/train.csv --output $(OUT)/model --model $(MODEL) $(DEMO_FLAGS)
	HF_HUB_OFFLINE=1 $(BIN)/arenapref evaluate --model $(OUT)/model --data $(OUT)/data/holdout.csv

# Headless Chromium + ChromeDriver (Debian packages) for the report test; a no-op when both are installed.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "warning: install chromium and chromium-driver (Debian packages) for the report test" >&2; fi

test: dev browser
	$(BIN)/ruff check src tests bench docs
	$(BIN)/lint-imports
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q
	HF_HUB_OFFLINE=1 NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -q

clean:
	rm -rf $(VENV) runs
