#!/bin/bash
# The benchmark: Torch against the naive tmux sender, with the real Claude
# Code and the other pinned agent CLIs as agents (against torch-test-llm,
# the stand-in of their model APIs on the sandbox's loopback), and at fleet
# scale (200 agents, 10,000 pending check-ins), in a real systemd sandbox.
# Installs the pinned CLIs first (scripts/setup-clis.sh; once, then a
# version check). Builds
# release binaries (Torch, and the scripted test agent and the bench, so
# that their debug builds do not eat the CPU Torch is measured on), prints
# the tables and writes them into docs/benchmarks.md. Takes about 11
# minutes; options after the script name go to torch-bench (e.g. `--fleet
# 50 --pending 1000`; see `--help`).
# Run as root on Debian 12:  scripts/bench.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ "$(id -u)" = 0 ] || { echo "bench: run as root (it boots a systemd sandbox)" >&2; exit 1; }
scripts/setup-debian.sh
scripts/setup-clis.sh
cargo build --release -p torch -p torch-agent -p torchd -p torch-metrics -p torch-alerts -p torch-web -p torch-tests --bins
TORCH_BIN_DIR=$PWD/target/release TORCH_BENCH_COMMAND="scripts/bench.sh${*:+ $*}" \
  target/release/torch-bench --write docs/benchmarks.md "$@"
