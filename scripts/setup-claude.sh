#!/bin/bash
# Installs the pinned Claude Code CLI that the integration tests run as a
# real agent (against the stand-in model API torch-test-llm, never a real
# one) into /opt/torch-test/claude-code/VERSION, once. The sandboxes are an
# overlay of the host root, so what is under /opt before they boot is there
# inside too. Run as root:  scripts/setup-claude.sh
# The version is pinned here and only here; tests/src/llm.rs reads it from
# this line.
CLAUDE_CODE_VERSION=2.1.332
set -euo pipefail
DIR=/opt/torch-test/claude-code/$CLAUDE_CODE_VERSION
BIN=$DIR/node_modules/.bin/claude

installed() { [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -q "^$CLAUDE_CODE_VERSION\b"; }

if installed; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm
fi
# Package scripts stay off (we run no code from the registry at install
# time), so we do the one thing the package's postinstall would: put the
# native binary of this platform over the placeholder bin/claude.exe.
mkdir -p "$DIR"
npm install --prefix "$DIR" --no-audit --no-fund --ignore-scripts \
  "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION"
case "$(uname -m)" in
  x86_64) platform=linux-x64 ;;
  aarch64) platform=linux-arm64 ;;
  *) echo "setup-claude: no Claude Code build for $(uname -m)" >&2; exit 1 ;;
esac
native=$DIR/node_modules/@anthropic-ai/claude-code-$platform/claude
[ -x "$native" ] || { echo "setup-claude: $native missing after npm install" >&2; exit 1; }
ln -f "$native" "$DIR/node_modules/@anthropic-ai/claude-code/bin/claude.exe"
if ! installed; then
  echo "setup-claude: $BIN --version does not say $CLAUDE_CODE_VERSION:" >&2
  "$BIN" --version >&2 || true
  exit 1
fi
echo "setup-claude: Claude Code $CLAUDE_CODE_VERSION in $DIR"
