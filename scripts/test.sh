#!/bin/bash
# The whole test suite: unit tests, then the integration tests, which boot a
# real systemd (with D-Bus, journald and tmux) in a sandbox per test.
# Run as root on Debian 12:  scripts/test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ "$(id -u)" = 0 ] || { echo "test: run as root (the integration tests boot a systemd sandbox)" >&2; exit 1; }
scripts/setup-debian.sh
# The pinned agent CLIs (scripts/agent-clis.pins) that tests/tests/claude.rs,
# gemini.rs, codex.rs, opencode.rs and aider.rs run as real agents (against our
# stand-in of their model API); without them those tests fail here rather
# than skipping.
scripts/setup-clis.sh
export TORCH_REQUIRE_CLAUDE=1 TORCH_REQUIRE_GEMINI=1 TORCH_REQUIRE_CODEX=1 TORCH_REQUIRE_OPENCODE=1 TORCH_REQUIRE_AIDER=1
# setup-debian.sh installed Chromium for the web dashboard's browser test.
export TORCH_REQUIRE_CHROMIUM=1
# The integration tests install these binaries into each sandbox, and the
# packaging tests install the .deb and inspect the .rpm.
cargo build --workspace --bins
scripts/package.sh
# Sandboxes boot in parallel; more at once than cores only adds noise. The
# tests of the real CLIs record what they verified in target/compat.
rm -rf target/compat
threads="${TORCH_TEST_THREADS:-3}"
if cargo nextest --version >/dev/null 2>&1; then
    # nextest runs the tests of every file from one pool, so the slow files
    # (each real CLI's) overlap instead of running one after another, and it
    # prints each test's time. It runs no doctests.
    cargo nextest run --workspace --no-fail-fast --test-threads="$threads"
    cargo test --workspace --doc
else
    cargo test --workspace -- --test-threads="$threads"
fi
# The matrix of docs/compatibility.md is what this run verified.
target/debug/torch-compat --check docs/compatibility.md
