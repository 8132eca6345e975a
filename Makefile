# The two commands a newcomer needs: `make demo` (the main job on the embedded stand-in) and
# `make test`. Both set up everything from a bare Python 3.11 + pip + make + gcc machine:
# a virtual environment with this project installed in it (editable, with the stand-in and dev
# extras), so the `tfsload` command and `locust -f "$(tfsload locustfile)"` work as for users.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MODEL_DIR := models
MODEL_NAME := model

.PHONY: setup demo test lint export clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[standin,dev]"
	touch $@

# Exports the model once; `make export` again leaves an existing version alone. Trained on the
# synthetic IMDB-like set, so that nothing reaches beyond this machine; the real reviews with
# `make export EXPORT_ARGS="--data auto"` (downloads IMDB) or `EXPORT_ARGS="--imdb-npz FILE"`.
EXPORT_ARGS ?= --data synthetic
$(MODEL_DIR)/$(MODEL_NAME)/instances.json: | setup
	$(PY) -m model_export --out $(MODEL_DIR) --model-name $(MODEL_NAME) $(EXPORT_ARGS)

export: $(MODEL_DIR)/$(MODEL_NAME)/instances.json

# The demo matrix on stand-ins the runner launches (no Docker, GPU or internet needed). The
# runner prints the summary table and the report's path. Exit 3 (a cell's verdict is FAIL, e.g.
# a saturated load generator) is a finding shown in the report, not a failed demo.
DEMO := configs/experiments/demo.toml
demo: setup export
	$(VENV)/bin/tfsload run $(DEMO) || [ $$? -eq 3 ]

test: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
