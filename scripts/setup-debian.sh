#!/bin/bash
# Installs what Torch needs to build and test on Debian 12, only if missing:
# tmux, D-Bus, systemd (booted only inside the sandbox, never as the host's
# init), util-linux (unshare/nsenter/runuser), procps, polkitd and the SQLite
# headers. Needs root.
set -euo pipefail
missing=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "$1" ]; }
have tmux || missing+=(tmux)
have dbus-daemon || missing+=(dbus)
{ have /lib/systemd/systemd && have journalctl && have busctl; } || missing+=(systemd)
{ have unshare && have nsenter; } || missing+=(util-linux)
have pgrep || missing+=(procps)
# torchd runs unprivileged; polkit grants it agent units.
have /usr/lib/polkit-1/polkitd || missing+=(polkitd)
have runuser || missing+=(util-linux)
have git || missing+=(git)
# Package checks: lintian for the .deb, Debian's rpm tools for the .rpm.
have lintian || missing+=(lintian)
have rpm || missing+=(rpm)
# The hub links the system SQLite.
{ [ -e /usr/include/sqlite3.h ] && have pkg-config; } || missing+=(libsqlite3-dev pkg-config)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "setup: need root to install ${missing[*]}" >&2; exit 1; }
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || {
  echo "setup: no Rust toolchain found; install one with rustup (https://rustup.rs), then run this again" >&2
  exit 1
}
