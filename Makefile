# Curator — everything a new machine needs comes from this file and pyproject.toml.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
HOST   ?= 127.0.0.1
PORT   ?= 8000
export CURATOR_DATA_DIR ?= data

.PHONY: run test test-fast lint docs bench bench-sim bench-scale bench-loop bench-load bench-trl install clean

$(VENV)/.installed: pyproject.toml client/pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first: a CPU build lies on this machine's disk; GPU users bring their own.
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ./client -e ".[dev,embed,sim]"
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/curator migrate
	$(VENV)/bin/curator bank demo
	$(VENV)/bin/curator serve --host $(HOST) --port $(PORT)

test: install
	$(VENV)/bin/lint-imports --no-cache
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -q   # a broken docs link fails
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

docs: install   # the documentation site (docs/, mkdocs.yml) into artifacts/site
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict
	@echo "open artifacts/site/index.html"

lint: install
	$(VENV)/bin/ruff check service client tests bench
	$(VENV)/bin/lint-imports --no-cache

bench: install
	$(PY) bench/select_latency.py
	$(PY) bench/osmd_update.py

# 8 scenarios × 6 strategies (incl. the oracle) × held-out seeds 0–4 × 400 steps, direct
# engine, 2 processes (tuning used seeds 100–102). Measured 389 s on the 2-core box, plus
# MiniLM embedding of text-minilm's 10k prompts (1.5–3 min, first run only:
# artifacts/sim/cache).
bench-sim: install
	$(VENV)/bin/curator sim --scenario all --seeds 5 --seed-base 0 --out artifacts/sim

bench-scale: install   # ~12 min: 10k / 100k / 1M problems
	$(PY) bench/scale.py

# select inside a training loop (select → feedback → applied → select), 5 strategies ×
# 10k/100k/1M × SQLite and PostgreSQL + Redis (needs PostgreSQL on 127.0.0.1:5432), plus
# the admin history endpoints on a 10,000-step run. Long: 10k+100k × both took 16 min on
# the 2-core box, 1M on SQLite 6 more (PostgreSQL's 1M import much longer).
# Quick (10k, SQLite, ~1.5 min): make bench-loop ARGS=--quick
bench-loop: install
	$(PY) bench/loop_latency.py $(ARGS)

bench-load: install    # needs PostgreSQL; starts its own Redis, 2 APIs and 2 workers
	$(PY) bench/load.py

# TRL GRPOTrainer through CuratorGRPOTrainer on reasoning-gym problems, against a live
# `curator serve`: uniform vs actor_curator vs sec, 2 seeds (bench/trl_reasoning_gym.md).
# Writes bench/results/trl-reasoning-gym.{md,png}. GPU / larger runs: ARGS="--device cuda ..."
bench-trl: install
	$(PY) bench/trl_reasoning_gym.py $(ARGS)

clean:   # also the default data dir (dev database, banks, admin token)
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis data
