# Set-up and entry points. Everything slow happens once and is reused: the
# libtorch venv and the cargo target folder live outside the clone, at
# stable paths, so a fresh clone builds incrementally from the last build.
SHELL := /bin/bash
CACHE_HOME ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/tuneflow
export CARGO_TARGET_DIR ?= $(CACHE_HOME)/target
# One stable absolute value: any change of LIBTORCH rebuilds torch-sys's C++
# wrapper (minutes). The script installs torch into the venv only if missing.
export LIBTORCH := $(shell scripts/ensure-libtorch.sh)
ifeq ($(LIBTORCH),)
$(error scripts/ensure-libtorch.sh failed; see its message above)
endif
BIN := $(CARGO_TARGET_DIR)/release/tuneflow

.PHONY: build test demo image-to-voice demo-associate lint fmt bench deps browser gpu-bin

# Debian packages the fixtures need (espeak-ng voices, sox resampling),
# installed only when a command is missing.
deps:
	@command -v espeak-ng >/dev/null && command -v sox >/dev/null && \
	    test -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf || \
	    (DEBIAN_FRONTEND=noninteractive apt-get install -y -q espeak-ng sox fonts-dejavu-core || \
	     (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q espeak-ng sox fonts-dejavu-core))

# The headless browser the HTML report's tests open it in.
browser:
	@command -v chromium >/dev/null || \
	    (DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium || \
	     (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium))

build:
	cargo build --release --locked --workspace --bins

test: deps browser
	scripts/ensure-moto.sh >/dev/null
	cargo test --workspace --locked
	cargo test --workspace --exclude tuneflow-torch --locked --no-default-features

demo: deps build
	scripts/demo.sh "$(BIN)"

# Face-to-voice transfer on the fixtures (pipelines/image-to-voice.toml):
# image vs speaker pretraining vs scratch, mean ± std over I2V_SEEDS.
image-to-voice: deps build
	scripts/image-to-voice.sh "$(BIN)"

# Voice-face association: the real pairing against the shuffled control.
demo-associate: deps build
	scripts/demo-associate.sh "$(BIN)"

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo clippy --workspace --exclude tuneflow-torch --all-targets --locked --no-default-features -- -D warnings

fmt:
	cargo fmt --all

# Stripped release binaries to carry to the GPU machine, where
# `scripts/gpu-bench.sh gpu-bin` measures issue #14's table (no Rust there;
# ../shared/reference/gpu.md). gpu-bin/ is git-ignored.
gpu-bin: build
	mkdir -p gpu-bin
	strip -o gpu-bin/tuneflow "$(BIN)"
	strip -o gpu-bin/tuneflow-torch "$(BIN)-torch"

bench: build
	scripts/bench-data.sh "$(BIN)"
	scripts/bench-runner.sh "$(BIN)"
	scripts/bench-train.sh "$(BIN)-torch"
	python3 scripts/bench_wait.py "$(BIN)" "$(CACHE_HOME)/bench-fixtures"
