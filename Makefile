# The book's verbs. `make book` and `make test` set everything up on first use.
#   make book      build the site into book/_build/html from the committed notebooks
#   make test      lint, library tests, nbval over every chapter, site build, browser test
#   make execute   re-run the chapters (all, or CHAPTER=01_language_modeling) and refresh outputs
#   make zoo       train the zoo's cached models once (llmbook.zoo, ~/.cache/llmbook);
#                  nbval and execute need them (chapters 7, 9, 11-13, 15-17 load
#                  shakespeare-bpe-small, 10 the scaling-grid group, 13 also the
#                  draft model, 14 the RoPE and needle models, 16-17 the
#                  `derived` group: the PPO, GRPO and DPO policies)
#   make budget    time every chapter and the zoo build against the budget (a benchmark,
#                  not a test; BUDGET_ARGS=--fp32 times a bf16 CPU as the slow kind)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HTML   := book/_build/html
CHAPTER ?= *
# Committed outputs come from a CPU run, without progress bars.
RUN_ENV := LLMBOOK_DEVICE=cpu TQDM_DISABLE=1 PYTHONHASHSEED=0

.PHONY: all setup book test lint unit zoo nbval site-test execute budget clean graphviz

all: book

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (llmbook)" >/dev/null
	@touch $(STAMP)

# Graphviz's `dot` draws the book's diagrams (sphinx.ext.graphviz) at build time.
graphviz:
	@command -v dot >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's graphviz (dot draws the book's diagrams)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null; \
	  else \
	    echo "The book's diagrams need Graphviz's dot, which is not installed. Install it" >&2; \
	    echo "(Debian/Ubuntu: sudo apt-get install graphviz; macOS: brew install graphviz)" >&2; \
	    echo "and run make again." >&2; exit 1; \
	  fi; }

setup: $(STAMP) graphviz

book: $(STAMP) graphviz
	rm -rf $(HTML)
	$(BIN)/jupyter-book build . --path-output book --warningiserror --nitpick --keep-going --quiet
	@echo "The site is in $(HTML)/index.html (open it in a browser, or: python -m http.server -d $(HTML))"

lint: $(STAMP)
	$(BIN)/ruff check lib tests book/_ext benchmarks
	$(BIN)/ruff format --check lib tests book/_ext benchmarks
	$(BIN)/ruff format --check --line-length 80 chapters

unit: $(STAMP)
	$(RUN_ENV) $(BIN)/python -m pytest tests --ignore=tests/site -q

ZOO := shakespeare-bpe-small shakespeare-bpe-draft shakespeare-bpe-rope needle-bytes-rope \
  scaling-grid derived
zoo: $(STAMP)
	$(RUN_ENV) $(BIN)/python -m llmbook.zoo build $(ZOO)

nbval: $(STAMP) zoo
	$(RUN_ENV) $(BIN)/python -m pytest --nbval chapters/*.ipynb --nbval-current-env \
	  --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=300 -q -p no:cacheprovider

site-test: $(STAMP)
	$(BIN)/python -m pytest tests/site -q -p no:cacheprovider

test: lint unit nbval book site-test
	@echo "make test: lint, library tests, nbval, site build (-W -n) and browser test all passed."

# what executing CHAPTER needs from the zoo: all of it for all chapters (*), else
# nothing for chapters 1-6 and 8
zoo_for = $(if $(filter 07_% 09_% 11_% 12_% 13_% 15_% 16_% 17_%,$(1)),shakespeare-bpe-small) \
  $(if $(filter 10_%,$(1)),scaling-grid) $(if $(filter 13_%,$(1)),shakespeare-bpe-draft) \
  $(if $(filter 14_%,$(1)),shakespeare-bpe-rope needle-bytes-rope) \
  $(if $(filter 16_% 17_%,$(1)),derived)
EXEC_ZOO := $(strip $(if $(filter *,$(CHAPTER)),$(ZOO),$(call zoo_for,$(CHAPTER))))
execute: $(STAMP)
	$(if $(EXEC_ZOO),$(RUN_ENV) $(BIN)/python -m llmbook.zoo build $(EXEC_ZOO))
	@for md in chapters/$(CHAPTER).md; do \
	  echo "executing $$md"; start=$$(date +%s); \
	  $(BIN)/jupytext --quiet --sync "$$md" || exit 1; \
	  $(RUN_ENV) $(BIN)/jupyter nbconvert --to notebook --execute --inplace --log-level=WARN \
	    --ExecutePreprocessor.record_timing=False --ExecutePreprocessor.timeout=600 \
	    "$${md%.md}.ipynb" || exit 1; \
	  $(BIN)/jupytext --quiet --sync "$$md" || exit 1; \
	  echo "  $$md: $$(( $$(date +%s) - start )) s"; \
	done

budget: $(STAMP)
	$(BIN)/python benchmarks/bench_book.py $(BUDGET_ARGS)

clean:
	rm -rf book/_build .pytest_cache
