#!/bin/bash
# Installs the pinned agent CLIs (scripts/agent-clis.pins) that the
# integration tests run as real agents, each into
# /opt/torch-test/DIR/VERSION, once. The sandboxes are an overlay of the host
# root, so what is under /opt before they boot is there inside too. Needs
# Node.js 20 or later with npm (installed from Debian's packages if npm is
# missing), and for a CLI from PyPI (its package reads pypi:NAME) Debian's
# Python 3 with venv (installed if missing), each such CLI in a virtual
# environment of its own. Debian's, because the agents run as users of their
# own: a virtual environment runs its base Python, which must be theirs to
# read (one under /root, as pyenv puts it, is not).
# Run as root:  scripts/setup-clis.sh [DIR...]   (default: all)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PINS=scripts/agent-clis.pins

# Prints "package version command" of the pin named DIR.
pin() { awk -v d="$1" '$1 == d { print $2, $3, $4; found = 1 } END { exit !found }' "$PINS"; }

installed() { [ -x "$1" ] && "$1" --version 2>/dev/null | grep -q "\b$2\b"; }

need_node() {
  if ! command -v npm >/dev/null; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm
  fi
  local major
  major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  [ "$major" -ge 20 ] || { echo "setup-clis: the agent CLIs need Node.js 20 or later; node is $(node --version 2>/dev/null || echo missing)" >&2; exit 1; }
}

# Claude Code's and opencode's package scripts would put the native binary of
# this platform over a placeholder; package scripts stay off, so we do it.
native() {
  local dir=$1 name=$2 platform
  case "$(uname -m)" in
    x86_64) platform=linux-x64 ;;
    aarch64) platform=linux-arm64 ;;
    *) echo "setup-clis: no $name build for $(uname -m)" >&2; exit 1 ;;
  esac
  local from to
  case "$name" in
    claude-code)
      from=$dir/node_modules/@anthropic-ai/claude-code-$platform/claude
      to=$dir/node_modules/@anthropic-ai/claude-code/bin/claude.exe ;;
    opencode)
      # Its build for x86_64 needs AVX2; the baseline build runs without.
      if [ "$platform" = linux-x64 ] && ! grep -qw avx2 /proc/cpuinfo; then
        platform=linux-x64-baseline
      fi
      from=$dir/node_modules/opencode-$platform/bin/opencode
      to=$dir/node_modules/opencode-ai/bin/opencode.exe ;;
    *) return 0 ;;
  esac
  [ -x "$from" ] || { echo "setup-clis: $from missing after npm install" >&2; exit 1; }
  ln -f "$from" "$to"
}

PYTHON=/usr/bin/python3

need_venv() {
  # Debian's python3 has the venv module without ensurepip, which python3-venv adds.
  if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 python3-venv
  fi
  local ok
  ok=$("$PYTHON" -c 'import sys; print(int((3, 10) <= sys.version_info[:2] <= (3, 12)))' 2>/dev/null || echo 0)
  [ "$ok" = 1 ] || { echo "setup-clis: the CLIs from PyPI need Python 3.10 to 3.12; $PYTHON is $("$PYTHON" --version 2>&1)" >&2; exit 1; }
}

# A PyPI package into its own virtual environment in $dir. pip builds no
# package from source (--only-binary): that would run the package's code.
pypi_install() {
  local dir=$1 package=$2 version=$3
  need_venv
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check --only-binary=:all: "$package==$version"
}

install_one() {
  local name=$1 package version command
  read -r package version command < <(pin "$name") || { echo "setup-clis: no pin named $name in $PINS" >&2; exit 1; }
  local dir=/opt/torch-test/$name/$version bin
  case "$package" in
    pypi:*) bin=$dir/bin/$command ;;
    *) bin=$dir/node_modules/.bin/$command ;;
  esac
  if installed "$bin" "$version"; then
    # A virtual environment made from another Python is made again.
    case "$package" in
      pypi:*) grep -qx "home = ${PYTHON%/*}" "$dir/pyvenv.cfg" && return 0 ;;
      *) return 0 ;;
    esac
  fi
  case "$package" in
    pypi:*) pypi_install "$dir" "${package#pypi:}" "$version" ;;
    *)
      need_node
      mkdir -p "$dir"
      # Package scripts stay off: we run no code from the registry at install time.
      npm install --prefix "$dir" --no-audit --no-fund --ignore-scripts "$package@$version"
      native "$dir" "$name" ;;
  esac
  if ! installed "$bin" "$version"; then
    echo "setup-clis: $bin --version does not say $version:" >&2
    "$bin" --version >&2 || true
    exit 1
  fi
  echo "setup-clis: $package $version in $dir"
}

if [ $# = 0 ]; then
  set -- $(awk '!/^#/ && NF { print $1 }' "$PINS")
fi
for name in "$@"; do
  install_one "$name"
done
