#!/bin/bash
# Moves the pins of scripts/agent-clis.pins to the newest release on npm
# (or PyPI),
# installs those releases, and reruns each CLI's tests against them; prints
# which passed. A pin is changed in the file only; commit it when its tests
# pass (git diff shows what moved).
# Run as root:  scripts/bump-clis.sh [DIR...]   (default: all)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PINS=scripts/agent-clis.pins
[ "$(id -u)" = 0 ] || { echo "bump-clis: run as root (the tests boot a systemd sandbox)" >&2; exit 1; }
if [ $# = 0 ]; then
  set -- $(awk '!/^#/ && NF { print $1 }' "$PINS")
fi
# The newest release on PyPI, from its JSON API.
newest_on_pypi() {
  curl -fsS "https://pypi.org/pypi/$1/json" | python3 -c 'import json, sys; print(json.load(sys.stdin)["info"]["version"])'
}
cargo build --workspace --bins
results=()
for name in "$@"; do
  read -r package old test < <(awk -v d="$name" '$1 == d { print $2, $3, $5 }' "$PINS") \
    || { echo "bump-clis: no pin named $name in $PINS" >&2; exit 1; }
  case "$package" in
    pypi:*) new=$(newest_on_pypi "${package#pypi:}") ;;
    *) new=$(npm view "$package" version) ;;
  esac
  if [ "$new" != "$old" ]; then
    # Only the version column of this CLI's row changes.
    awk -v d="$name" -v v="$new" '$1 == d { sub(" " $3 " ", " " v " ") } { print }' "$PINS" > "$PINS.tmp"
    mv "$PINS.tmp" "$PINS"
  fi
  scripts/setup-clis.sh "$name"
  if cargo test -p torch-tests --test "${test%.rs}" -- --test-threads=2; then
    results+=("$name $old -> $new: passed")
  else
    results+=("$name $old -> $new: FAILED (tests/tests/$test)")
  fi
done
printf '%s\n' "${results[@]}"
