# Every target sets up what is missing (venv, pinned packages, weights) and reuses what is there.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
WEIGHTS := models/facenet_keras.h5

.PHONY: setup models browser test demo bench serve clean-venv

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

# The console's tests drive Debian's chromium, headless: installed here when missing and this is a
# Debian machine we may administer (as in CI); elsewhere those tests skip and say why. Never a
# downloaded browser.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		{ DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
		  { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; }; } && \
		echo "installed chromium for the console tests"; } || echo "no chromium: the console tests will skip"

test: setup browser
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest $(PYTEST_ARGS)

# The HTTP service on server.host:server.port (127.0.0.1:8000) with the roster under FACEREC_HOME.
# `keys init` makes an admin and a client key only when no key is configured, and prints them once:
# <home>/api-keys.yaml (mode 0600) keeps only their hashes. `serve` applies migrations and runs gunicorn.
serve: setup
	$(VENV)/bin/facerec keys init
	TF_CPP_MIN_LOG_LEVEL=2 $(VENV)/bin/facerec serve

demo: setup
	TF_CPP_MIN_LOG_LEVEL=2 $(VENV)/bin/facerec demo

bench: setup
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) bench/pipeline_speed.py

clean-venv:
	rm -rf $(VENV)
