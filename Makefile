# Two commands set everything up: `make run` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SEED_CUSTOMERS ?= 10000

.PHONY: run test lint typecheck bench clean-db api

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/crm db upgrade
	$(BIN)/crm seed --if-empty --customers $(SEED_CUSTOMERS)
	@# The first refresh (with three months of history) runs beside the starting server, so the app
	@# is up at once and its dashboards fill within seconds.
	$(BIN)/crm refresh --if-empty --backfill-months 3 --quiet & \
		$(BIN)/streamlit run streamlit_app.py --server.fileWatcherType none --server.runOnSave false \
			--client.showErrorDetails none --runner.postScriptGC false

# The HTTP API on the same database as the app (API_PORT, API_WORKERS); documentation at /docs.
API_PORT ?= 8000
API_WORKERS ?= 2
api: $(STAMP)
	$(BIN)/crm db upgrade
	$(BIN)/crm api serve --port $(API_PORT) --workers $(API_WORKERS)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy crm_core ml batch api

bench: $(STAMP)
	$(BIN)/python bench/seed_bench.py --postgres "$${CRM_TEST_POSTGRES_URL:-}"
	$(BIN)/python bench/refresh_bench.py --postgres "$${CRM_TEST_POSTGRES_URL:-}"
	$(BIN)/python bench/segments_bench.py --postgres "$${CRM_TEST_POSTGRES_URL:-}"

clean-db:
	rm -f data/crm.sqlite data/crm.sqlite-wal data/crm.sqlite-shm
