#!/bin/bash
# The whole test suite: unit tests, then the integration tests, which boot a
# real systemd (with D-Bus, journald and tmux) in a sandbox per test.
# Run as root on Debian 12:  scripts/test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ "$(id -u)" = 0 ] || { echo "test: run as root (the integration tests boot a systemd sandbox)" >&2; exit 1; }
scripts/setup-debian.sh
# The pinned Claude Code CLI that tests/tests/claude.rs runs as a real agent
# (against our stand-in of the model API); without it that test fails here
# rather than skipping.
scripts/setup-claude.sh
# Likewise the pinned Gemini CLI (tests/tests/gemini.rs).
scripts/setup-gemini.sh
export TORCH_REQUIRE_CLAUDE=1 TORCH_REQUIRE_GEMINI=1
# The integration tests install these binaries into each sandbox, and the
# packaging tests install the .deb and inspect the .rpm.
cargo build --workspace --bins
scripts/package.sh
# Sandboxes boot in parallel; more threads than cores only adds noise.
cargo test --workspace -- --test-threads="${TORCH_TEST_THREADS:-3}"
