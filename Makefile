# make install | make demo | make test | make docs — see README.md.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install demo test lint docs docs-serve bench bench-serve bench-latency bench-scale bench-llm clean

NODE_STAMP := tests/node/node_modules/.installed-stamp

install: $(STAMP) $(NODE_STAMP)

# The JavaScript clients the tests drive (the Vercel AI SDK), from the npm registry, as locked.
$(NODE_STAMP): tests/node/package.json tests/node/package-lock.json
	@command -v npm >/dev/null || { echo "Citewise's tests need Node.js and npm (Debian: apt-get install nodejs npm)"; exit 1; }
	npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

$(STAMP): pyproject.toml offline/en_core_web_sm/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Citewise needs Python 3.11 or newer (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,anthropic,gemini]' ./offline/en_core_web_sm
	$(BIN)/python -m citewise.offline
	touch $(STAMP)

demo: install
	$(BIN)/citewise ingest data/sample
	$(BIN)/citewise serve --host $(HOST) --port $(PORT) --demo

test: install
	scripts/ensure-chromium
	CITEWISE_TEST_REDIS_URL="$$(scripts/ensure-redis)" $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

docs: install
	$(BIN)/mkdocs build --strict --site-dir site

docs-serve: install
	$(BIN)/mkdocs serve --strict --dev-addr $(HOST):8002

bench: install
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/ingest.py

bench-serve: install
	$(BIN)/python bench/serve.py

# A Redis server keeps the ingest's vectors between runs (scripts/ensure-redis finds or starts one).
bench-latency: install
	$(BIN)/python bench/answer_latency.py --redis-url "$$(scripts/ensure-redis)"

# 10k and 100k chunks, embedded and on a Chroma server: about 45 minutes the first time.
# SIZES=10k,100k,1M adds the million (about 70 minutes more to build per store): see docs/benchmarks.md.
SIZES ?= 10k,100k
bench-scale: install
	$(BIN)/python bench/scale.py --redis-url "$$(scripts/ensure-redis)" --sizes $(SIZES)

bench-llm: install
	@echo "Installing the local-llm extra: llama-cpp-python compiles from source, 5 to 10 minutes"
	$(BIN)/python -m pip install --quiet -e '.[dev,local-llm]'
	$(BIN)/python bench/llm_answers.py

clean:
	rm -rf $(VENV) .citewise .pytest_cache .mypy_cache .ruff_cache site tests/node/node_modules
