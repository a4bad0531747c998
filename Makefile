# `make run` and `make test` set everything up from a clean checkout: they create or refresh .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench venv clean demo package package-test package-cpu package-cpu-test

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m anomalyapp --demo

demo: $(STAMP)
	$(PY) -m anomalyapp demo --out runs/demo

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m anomalyapp bench --json runs/bench.json

clean:
	rm -rf $(VENV) build dist runs *.egg-info

# Packaged build (README "Packaged build"): PyInstaller, one folder, two executables. Not part of `make test`.
PYINSTALLER_VERSION := 6.22.3
PYI_STAMP := $(VENV)/.pyinstaller-$(PYINSTALLER_VERSION)
PYI := $(PY) -m PyInstaller --noconfirm --clean --log-level WARN --distpath dist

$(PYI_STAMP): $(STAMP)
	$(PY) -m pip install --quiet "pyinstaller==$(PYINSTALLER_VERSION)"
	touch $(PYI_STAMP)

package: $(PYI_STAMP)
	rm -rf dist/anomalyapp build/pyinstaller
	$(PYI) --workpath build/pyinstaller packaging/anomalyapp.spec
	rm -rf build/pyinstaller
	du -sh dist/anomalyapp

package-test: $(STAMP)
	$(PY) packaging/package_test.py --dist dist/anomalyapp --work runs/package-test

package-cpu: $(PYI_STAMP)
	rm -rf dist/anomalyapp-cpu build/pyinstaller-cpu
	ANOMALYAPP_VARIANT=cpu $(PYI) --workpath build/pyinstaller-cpu packaging/anomalyapp.spec
	rm -rf build/pyinstaller-cpu
	du -sh dist/anomalyapp-cpu

package-cpu-test: $(STAMP)
	$(PY) packaging/package_test.py --dist dist/anomalyapp-cpu --work runs/package-cpu-test
