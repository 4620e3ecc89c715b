#!/bin/bash
# Installs the pinned Gemini CLI that the integration tests run as a real
# agent (against the stand-in model API torch-test-llm, never a real one)
# into /opt/torch-test/gemini-cli/VERSION, once. The sandboxes are an
# overlay of the host root, so what is under /opt before they boot is there
# inside too. Needs Node.js 20 or later (the package's engines). Run as
# root:  scripts/setup-gemini.sh
# The version is pinned here and only here; tests/src/llm.rs reads it from
# this line.
GEMINI_CLI_VERSION=0.61.0
set -euo pipefail
DIR=/opt/torch-test/gemini-cli/$GEMINI_CLI_VERSION
BIN=$DIR/node_modules/.bin/gemini

installed() { [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -q "^$GEMINI_CLI_VERSION\b"; }

if installed; then
  exit 0
fi
command -v npm >/dev/null || { echo "setup-gemini: npm missing (Node.js 20 or later with npm)" >&2; exit 1; }
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
[ "$major" -ge 20 ] || { echo "setup-gemini: Gemini CLI needs Node.js 20 or later; node is $(node --version 2>/dev/null || echo missing)" >&2; exit 1; }
# Package scripts stay off (we run no code from the registry at install
# time); the CLI runs without its optional node-pty build.
mkdir -p "$DIR"
npm install --prefix "$DIR" --no-audit --no-fund --ignore-scripts \
  "@google/gemini-cli@$GEMINI_CLI_VERSION"
if ! installed; then
  echo "setup-gemini: $BIN --version does not say $GEMINI_CLI_VERSION:" >&2
  "$BIN" --version >&2 || true
  exit 1
fi
echo "setup-gemini: Gemini CLI $GEMINI_CLI_VERSION in $DIR"
