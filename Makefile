# `make test` and `make bench` create .venv when missing and (re)install the package into it when pyproject.toml changes.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The package asks for a torch range; install this exact build first so pip never pulls a multi-GB CUDA wheel on a CPU
# machine (here pip finds the CPU wheel on disk). On a GPU machine: make test TORCH="torch==2.13.0" with your index.
TORCH ?= torch==2.13.0
LAYERS ?= 4

.PHONY: install test test-slow lint bench demo serve docs clean

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[all]"
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench examples docs

test: lint
	$(PY) -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) bench/rerank.py --layers $(LAYERS)
	$(PY) bench/embed.py --layers $(LAYERS)

# A RAG run over Python's own help topics; DEMO_ARGS="--framework langchain" for the LangChain classes.
demo: $(STAMP)
	$(PY) -m qwen3_rag_components.demo $(DEMO_ARGS)

# The demo's models over HTTP on 127.0.0.1:8000 (random checkpoints where the official ones cannot load);
# SERVE_ARGS="--port 9000 --api-key secret" for more.
serve: $(STAMP)
	$(VENV)/bin/qwen3-rag serve --demo $(SERVE_ARGS)

# The docs site: figures drawn from the engine's own pack plan and from bench/results, then a strict mkdocs build.
docs: $(STAMP)
	$(PY) -m pip install -q -e ".[docs]"
	$(PY) docs/figures.py
	$(PY) docs/example_outputs.py
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache .hypothesis
