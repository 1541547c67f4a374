# Two commands on a fresh machine (Debian, Python 3.11):
#   make book   - install everything, execute the chapters, build the HTML book (_build/html)
#   make test   - install everything, run the whole test suite
# Other targets: see `make help`.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
MATHJAX := book/_static/mathjax/tex-mml-chtml.js
WT_PROFILE ?=
NBVAL_SANITIZE := --nbval-sanitize-with tests/nbval_sanitize.cfg
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help install book test html-committed test-unit test-notebooks test-browser \
        test-notebooks-strict notebooks benchmark chromium clean reproduce audit test-audit student-notebooks lab pdf

help:
	@echo "make book                  build the HTML book (executes the chapters; archived chapters read results/)"
	@echo "make test                  unit tests, nbval (smoke profile), book build, PDF, browser checks"
	@echo "make pdf                   the whole book as one PDF (chromium, offline) in _build/pdf, linked from the HTML book"
	@echo "make test-notebooks-strict nbval in the book profile against the committed outputs (slow)"
	@echo "make notebooks             re-execute the chapters in place (WT_PROFILE=$(WT_PROFILE))"
	@echo "make benchmark             time the batched engine and the stacked LeNet-5 trainer against plain loops"
	@echo "make reproduce CHAPTER=x   run a chapter's evidence run into results/x (all chapters without CHAPTER; PROFILE=evidence, WORKERS=2)"
	@echo "make audit                 re-execute a sample of every archived run and compare exactly; then check"
	@echo "                           the engine's mixed precision against the same archives (verdicts only)"
	@echo "make student-notebooks     copies of the chapters without solutions or outputs, in _build/student-notebooks"
	@echo "make lab CHAPTER=x         open chapter x in JupyterLab (installs JupyterLab into the venv on first use)"

# --- installation ------------------------------------------------------------------------
$(INSTALLED): requirements-dev.txt constraints.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (set PYTHON=...)" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt -c constraints.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	touch $@

install: $(INSTALLED) $(MATHJAX)

node_modules/mathjax/package.json: package.json package-lock.json
	@command -v npm >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends npm >/dev/null; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# A 3 MB subset of MathJax 3 (the CHTML output with its fonts), so the book renders math offline.
$(MATHJAX): node_modules/mathjax/package.json
	rm -rf book/_static/mathjax.tmp
	mkdir -p book/_static/mathjax.tmp/output/chtml book/_static/mathjax.tmp/input/tex
	cp node_modules/mathjax/es5/tex-mml-chtml.js book/_static/mathjax.tmp/
	cp -r node_modules/mathjax/es5/output/chtml/fonts book/_static/mathjax.tmp/output/chtml/
	cp -r node_modules/mathjax/es5/input/tex/extensions book/_static/mathjax.tmp/input/tex/
	cp -r node_modules/mathjax/es5/ui node_modules/mathjax/es5/a11y book/_static/mathjax.tmp/
	rm -rf book/_static/mathjax && mv book/_static/mathjax.tmp book/_static/mathjax

chromium:
	@command -v chromium >/dev/null || { \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

# --- the book ----------------------------------------------------------------------------
# jupyter-cache keys notebooks on their code cells only; clear it when src/, results/ or the profile changes.
book: install
	@mkdir -p _build; key="$$({ find src -name '*.py'; find results -type f 2>/dev/null; } | sort | xargs cat | sha256sum | cut -c1-16)-$(WT_PROFILE)"; \
	if [ "$$(cat _build/.exec-key 2>/dev/null)" != "$$key" ]; then rm -rf _build/.jupyter_cache; fi; \
	echo "$$key" > _build/.exec-key
	$(PY) tools/status_page.py
	WT_PROFILE=$(WT_PROFILE) WT_PROGRESS=0 $(VENV)/bin/jupyter-book build -W -n --keep-going .
	rm -rf _build/html/reports
	$(MAKE) --no-print-directory pdf
	@echo "The book is in _build/html/index.html, its PDF in $(PDF)"

# The book from the committed notebook outputs (no execution): what `make test` checks.
html-committed: install
	trap 'rm -f conf.py' EXIT; $(VENV)/bin/jupyter-book config sphinx . >/dev/null; \
	$(VENV)/bin/sphinx-build -E -W -n --keep-going -q -b html -D nb_execution_mode=off . _build/html

# The whole book as one PDF: the single-page HTML build (committed outputs), printed by chromium
# after MathJax has typeset it; a copy goes next to the HTML book, whose intro page links it.
PDF := _build/pdf/why-lottery-tickets-win.pdf
pdf: install chromium
	trap 'rm -f conf.py' EXIT; $(VENV)/bin/jupyter-book config sphinx . >/dev/null; \
	$(VENV)/bin/sphinx-build -E -W -n --keep-going -q -b singlehtml -D nb_execution_mode=off . _build/singlehtml
	$(PY) tools/make_pdf.py --html _build/singlehtml --out $(PDF)
	@if [ -d _build/html/_static ]; then cp $(PDF) _build/html/_static/; fi

# --- tests -------------------------------------------------------------------------------
test: install chromium
	$(MAKE) --no-print-directory test-unit test-notebooks html-committed pdf test-browser test-audit

test-unit: install
	WT_PROGRESS=0 $(PY) -m pytest -q -n 2 --dist loadfile -m "not browser" tests

# nbval in the smoke profile: every cell must run; the claims verdicts (NBVAL_CHECK_OUTPUT) must match.
# Two kernels run at once, so each gets one thread (two threads each would oversubscribe 2 cores).
test-notebooks: install
	OMP_NUM_THREADS=1 WT_PROFILE=smoke WT_PROGRESS=0 $(PY) -m pytest -q -n 2 --dist loadfile --nbval-lax $(NBVAL_SANITIZE) notebooks

test-browser: install chromium
	WT_REQUIRE_BROWSER=1 $(PY) -m pytest -q -m browser tests

# nbval in the book profile against every committed output (minutes per chapter).
test-notebooks-strict: install
	OMP_NUM_THREADS=1 WT_PROFILE= WT_PROGRESS=0 $(PY) -m pytest -q -n 2 --dist loadfile --nbval $(NBVAL_SANITIZE) notebooks

# Re-execute the chapters in place (what is committed is the book profile).
notebooks: install
	WT_PROFILE=$(WT_PROFILE) WT_PROGRESS=0 $(PY) tools/execute_notebooks.py notebooks/*.ipynb

benchmark: install
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) benchmarks/bench_engine.py
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) benchmarks/bench_lenet.py

# --- the evidence archive ----------------------------------------------------------------
CHAPTER ?=
PROFILE ?= evidence
WORKERS ?= 2
reproduce: install
	$(PY) tools/reproduce.py $(if $(CHAPTER),$(CHAPTER),--all) --profile $(PROFILE) --workers $(WORKERS)

audit: install
	WT_PROGRESS=0 $(PY) tools/audit.py --samples 10 --record
	WT_PROGRESS=0 $(PY) tools/audit.py --samples 10 --record --precision mixed

# the short audit of `make test`: a few runs per archived chapter, and the mixed precision's verdicts on them
test-audit: install
	WT_PROGRESS=0 $(PY) tools/audit.py --samples 3 --quick
	WT_PROGRESS=0 $(PY) tools/audit.py --samples 3 --quick --precision mixed

# --- for teaching ------------------------------------------------------------------------
student-notebooks: install
	$(PY) tools/student_notebooks.py --out _build/student-notebooks

# JupyterLab is not needed to build or test the book, so it is installed on first use only.
LAB_VERSION = 4.6.6
lab: install
	@if [ -n "$(CHAPTER)" ] && [ ! -f notebooks/$(CHAPTER).ipynb ]; then \
	  echo "error: CHAPTER=$(CHAPTER) is not a chapter; allowed: $$(cd notebooks && ls *.ipynb | sed 's/\.ipynb//' | tr '\n' ' ')" >&2; exit 1; fi
	@test -x $(VENV)/bin/jupyter-lab || $(PY) -m pip install -q "jupyterlab==$(LAB_VERSION)" -c constraints.txt
	cd notebooks && WT_PROFILE=$(WT_PROFILE) $(CURDIR)/$(VENV)/bin/jupyter-lab $(if $(CHAPTER),$(CHAPTER).ipynb)

clean:
	rm -rf _build conf.py book/_static/mathjax
