# The README's two commands:
#   make run   — set up .venv and run the service on its embedded default
#   make test  — set up .venv, the system packages the tests need, and run lint + types + tests
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: run test lint layers typecheck unit system-deps ratelimit-service clean bench

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/integration-service run

system-deps:
	@scripts/system-deps

# envoyproxy/ratelimit for the scope-global e2e tests and bench: built once from the Go
# module proxy (pinned), cached under ~/.cache/integration-service/go.
ratelimit-service:
	@scripts/ratelimit-service >/dev/null

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The one-way layering contract in pyproject.toml ([tool.importlinter]).
layers: $(STAMP)
	$(VENV)/bin/lint-imports

test: $(STAMP) system-deps ratelimit-service lint layers typecheck
	$(VENV)/bin/pytest --cov --cov-report=term --cov-report=xml:.coverage.xml $(PYTEST_ARGS)

unit: $(STAMP)
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .integration-service .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.xml

# Benchmarks (not tests): about 13 minutes on 2 cores; writes bench/RESULTS.md, bench/plots/.
# BENCH_ARGS=--quick for a one-minute smoke run (into bench/quick/). See bench/README.md.
BENCH_STAMP := $(VENV)/.bench-installed-stamp
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	@touch $(BENCH_STAMP)

QUICK := $(findstring --quick,$(BENCH_ARGS))
bench: $(BENCH_STAMP)
	$(PY) -m bench.run $(BENCH_ARGS)
	# Vetted resolution (issue 15): its section is appended to the RESULTS.md just written.
	$(PY) -m bench.vetted $(QUICK) >> $(if $(QUICK),bench/quick,bench)/RESULTS.md
	$(PY) -m bench.fleet $(QUICK) --json $(if $(QUICK),bench/quick,bench)/fleet.json >> $(if $(QUICK),bench/quick,bench)/RESULTS.md
	# Token broker (issue 18): the full-length acceptance runs, appended the same way.
	$(PY) -m bench.tokens $(QUICK) >> $(if $(QUICK),bench/quick,bench)/RESULTS.md
	# The status page (issue 19): first paint and live-stream CPU at 1,000 integrations.
	$(PY) -m bench.ui $(QUICK) >> $(if $(QUICK),bench/quick,bench)/RESULTS.md
	# Fleet-scale performance (issue 20): our ADS server beside go-control-plane (bench/gocp,
	# built once by scripts/gocp-anchor from the Go module proxy), and the per-pod footprint.
	@scripts/gocp-anchor >/dev/null
	$(PY) -m bench.anchor $(QUICK) --json $(if $(QUICK),bench/quick,bench)/anchor.json >> $(if $(QUICK),bench/quick,bench)/RESULTS.md
	$(PY) -m bench.footprint --json $(if $(QUICK),bench/quick,bench)/footprint.json >> $(if $(QUICK),bench/quick,bench)/RESULTS.md
	$(PY) -m bench.fanout $(if $(QUICK),--n 10 1000) --json $(if $(QUICK),bench/quick,bench)/fanout.json >> $(if $(QUICK),bench/quick,bench)/RESULTS.md
	$(PY) -m bench.scrub $(if $(QUICK),--secrets 0 1000) --json $(if $(QUICK),bench/quick,bench)/scrub.json >> $(if $(QUICK),bench/quick,bench)/RESULTS.md
	# Global quotas (issue 17): envoyproxy/ratelimit built once by scripts/ratelimit-service.
	@scripts/ratelimit-service >/dev/null
	$(PY) -m bench.ratelimit $(QUICK) --json $(if $(QUICK),bench/quick,bench)/ratelimit.json >> $(if $(QUICK),bench/quick,bench)/RESULTS.md
