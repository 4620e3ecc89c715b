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
# The web dashboard's browser test: Debian's headless Chromium and its
# WebDriver.
{ have /usr/bin/chromium && have /usr/bin/chromedriver; } || missing+=(chromium chromium-driver)
# The cluster tests run Debian's Redis server: redis-tools ships its binary
# (as redis-check-rdb) without the service the redis-server package starts.
have /usr/bin/redis-check-rdb || missing+=(redis-tools)
# ...and make its TLS certificates with openssl.
have openssl || missing+=(openssl)
# The hub links the system SQLite.
{ [ -e /usr/include/sqlite3.h ] && have pkg-config; } || missing+=(libsqlite3-dev pkg-config)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "setup: need root to install ${missing[*]}" >&2; exit 1; }
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The metrics test has the real Prometheus scrape the hub's metrics. Only its
# binary is taken out of Debian's package (a static Go program): installing
# the package would start a Prometheus server on this machine.
PROMETHEUS=/opt/torch-test/prometheus/usr/bin/prometheus
if ! [ -x "$PROMETHEUS" ]; then
  [ "$(id -u)" = 0 ] || { echo "setup: need root to unpack prometheus" >&2; exit 1; }
  echo "setup: unpacking prometheus from Debian's package"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq prometheus >/dev/null 2>&1) || {
    apt-get update -qq
    (cd "$tmp" && apt-get download -qq prometheus >/dev/null)
  }
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
  install -D -m755 "$tmp/x/usr/bin/prometheus" "$PROMETHEUS"
  rm -rf "$tmp"
fi
command -v cargo >/dev/null || {
  echo "setup: no Rust toolchain found; install one with rustup (https://rustup.rs), then run this again" >&2
  exit 1
}
