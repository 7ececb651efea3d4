# Two commands: `make run` and `make test`. Both set everything up first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
SANDBOX_PORT ?= 8001
# `make run` talks to the local sandbox unless you point it at the real API.
XIMILAR_API_URL ?= http://127.0.0.1:$(SANDBOX_PORT)/
XIMILAR_SANDBOX_TOKENS ?= sandbox-demo-token
export PORT SANDBOX_PORT XIMILAR_API_URL XIMILAR_SANDBOX_TOKENS

.PHONY: run test lint format compat clean

$(BIN)/activate: requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is needed ($(PYTHON) not found)"; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(BIN)/activate

run: $(BIN)/activate
	$(BIN)/python manage.py migrate --noinput
	@echo ""
	@echo "  Ximilar Portal:  http://127.0.0.1:$(PORT)/"
	@echo "  API:             $(XIMILAR_API_URL)"
	@echo "  Sandbox token:   $(XIMILAR_SANDBOX_TOKENS)  (paste it on the API token page)"
	@echo ""
	@# exec: make waits for the supervisor alone, which stops every process in order on
	@# Ctrl-C, SIGTERM, SIGHUP or a kill of this group, and restarts one that dies.
	exec $(BIN)/python -m ximilar_portal.supervisor Procfile --exit-with-parent \
		--port web=$(PORT) --port sandbox=$(SANDBOX_PORT)

test: $(BIN)/activate
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python manage.py makemigrations --check --dry-run >/dev/null
	$(BIN)/pytest

lint: $(BIN)/activate
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/activate
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

compat: $(BIN)/activate
	$(BIN)/python bench/compat_official_client.py

clean:
	rm -rf var/test .pytest_cache .ruff_cache
