# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
# Everything big (exports, cargo target, C++ build, ONNX Runtime headers) lives under
# $(CACHE), never in the checkout, so a fresh clone reuses it.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CACHE  ?= $(or $(EMBEDPERF_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/embedperf)
export CARGO_TARGET_DIR := $(CACHE)/cargo-target
export PYTHON_FOR_NATIVE := $(abspath $(BIN)/python)

.PHONY: setup native native-rust native-cpp demo test test-python test-native infra-tools lock clean

setup: $(VENV)/.installed

# Versions that matter to the numbers are pinned in constraints.txt, not in pyproject.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $@

# Native runners. A missing toolchain is reported and skipped: those cells are then
# `skipped` with the reason, and the rest of the run goes on.
native: native-rust native-cpp

native-rust:
	@if command -v cargo >/dev/null; then \
	  cargo build --release --manifest-path native/rust/Cargo.toml || echo "native: the Rust runners failed to build (see above)"; \
	else echo "native: cargo not found: install Rust (https://rustup.rs) to get candle, onnxruntime-rust, null-rust"; fi

native-cpp: setup
	@if command -v cmake >/dev/null && command -v c++ >/dev/null; then \
	  PYTHON=$(PYTHON_FOR_NATIVE) bash native/cpp/build.sh || echo "native: the C++ runners failed to build (see above)"; \
	else echo "native: cmake or a C++ compiler not found: install them to get onnxruntime-cpp, null-cpp"; fi

demo: setup native
	$(BIN)/embedperf run --suite suites/quick.yaml

test: setup native test-native test-python

test-python: setup infra-tools
	$(BIN)/pytest -q

# checkov pins versions that clash with the benchmark's own, so it lives in a venv of its own.
CHECKOV := $(CACHE)/tools/checkov/bin/checkov
infra-tools: $(CHECKOV)
$(CHECKOV):
	$(PYTHON) -m venv $(CACHE)/tools/checkov
	$(CACHE)/tools/checkov/bin/pip install -q 'checkov==3.3.30'


test-native:
	@if command -v cargo >/dev/null; then cargo test --release --manifest-path native/rust/Cargo.toml; fi
	@if command -v nvcc >/dev/null; then \
	  cargo check --release --manifest-path native/rust/Cargo.toml -p candle-runner -p ort-runner --features cuda; \
	else echo "test-native: cargo check --features cuda skipped: no CUDA toolkit here (nvcc not found)"; fi
	@if [ -f "$(CACHE)/cpp-build/CTestTestfile.cmake" ]; then ctest --test-dir "$(CACHE)/cpp-build" --output-on-failure; fi

lock: setup
	( echo '# Exact versions used by `make` (pip -c). Regenerate with `make lock` after an upgrade; the numbers depend on these.'; \
	  $(BIN)/pip freeze --exclude-editable ) > constraints.txt

clean:
	rm -rf $(VENV) results
