# Every target sets up what is missing (venv, pinned packages, weights) and reuses what is there.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
WEIGHTS := models/facenet_keras.h5

.PHONY: setup models test demo bench serve clean-venv

setup: $(STAMP) models

$(PY):
	$(PYTHON) -m venv $(VENV)

# Editable in compat mode: the project folder goes on sys.path, so a package added later needs no
# reinstall (the default mode freezes the list of packages at install time).
$(STAMP): requirements.lock pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
		--config-settings editable_mode=compat -e .
	touch $@

models: $(STAMP)
	$(PY) models/fetch.py

test: setup
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest $(PYTEST_ARGS)

# The HTTP service on server.host:server.port (127.0.0.1:8000) with the roster under FACEREC_HOME.
# `keys init` writes <home>/api-keys.yaml (an admin and a client key, mode 0600) only when no key is
# configured; `serve` applies migrations and runs gunicorn.
serve: setup
	$(VENV)/bin/facerec keys init
	TF_CPP_MIN_LOG_LEVEL=2 $(VENV)/bin/facerec serve

demo: setup
	TF_CPP_MIN_LOG_LEVEL=2 $(VENV)/bin/facerec demo

bench: setup
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) bench/pipeline_speed.py

clean-venv:
	rm -rf $(VENV)
