# The README's commands. `make run` and `make test` each install into .venv
# first (once, again only when pyproject.toml changes).

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# torch first, pinned: pip's config here offers a local CPU build of 2.13.0,
# and resolving it with everything else could pick CUDA wheels instead.
TORCH  := torch==2.13.0

.PHONY: setup run test test-fast bench lint ui serve clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: setup
	PATH=$(BIN):$$PATH dvc repro

test: setup
	$(BIN)/ruff check tradingrl tasks flows tests benchmarks
	PATH=$(BIN):$$PATH pytest -n 2 --dist worksteal --durations=15

test-fast: setup
	PATH=$(BIN):$$PATH pytest -n 2 --dist worksteal -m "not slow"

bench: setup
	PATH=$(BIN):$$PATH python benchmarks/bench_features.py
	PATH=$(BIN):$$PATH python benchmarks/bench_data_pipeline.py
	PATH=$(BIN):$$PATH python benchmarks/bench_data_pipeline.py --csv
	PATH=$(BIN):$$PATH python benchmarks/bench_cli_startup.py
	PATH=$(BIN):$$PATH python benchmarks/bench_indicators.py
	PATH=$(BIN):$$PATH python benchmarks/bench_cnn_lstm.py
	PATH=$(BIN):$$PATH python benchmarks/bench_env.py
	PATH=$(BIN):$$PATH python benchmarks/bench_risk.py
	PATH=$(BIN):$$PATH python benchmarks/bench_portfolio_env.py
	PATH=$(BIN):$$PATH python benchmarks/bench_backtest.py
	PATH=$(BIN):$$PATH python benchmarks/bench_sb3_training.py
	PATH=$(BIN):$$PATH python -m benchmarks.bench_policy_latency       # needs `make run` first
	PATH=$(BIN):$$PATH python -m benchmarks.bench_policy_latency_http  # needs `make run` first

lint: setup
	$(BIN)/ruff check tradingrl tasks flows tests benchmarks

# MLflow UI on http://127.0.0.1:5000 over mlflow.db and mlartifacts/ (Ctrl-C stops it)
ui: setup
	$(BIN)/tradingrl ui --repo $(CURDIR)

# The Prefect deployments of pipelines.yaml on their schedules, until Ctrl-C
serve: setup
	PATH=$(BIN):$$PATH tradingrl serve --config $(CURDIR)/pipelines.yaml

clean:
	rm -rf data/raw data/validated data/quarantine data/features data/predictions models \
	    reports/*.json reports/*.html reports/data_docs reports/model_plots reports/plots \
	    reports/evaluation reports/agent_plots
