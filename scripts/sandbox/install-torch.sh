#!/bin/bash
# Installs the freshly built Torch binaries and unit files into a running
# sandbox (booted by start.sh), where a package would put them, then reloads
# systemd. Used by the integration tests and by the demo.
#   SDH_DIR        the sandbox (default /tmp/systemd-sandbox)
#   TORCH_BIN_DIR  where the binaries are (default: target/debug of this tree)
set -euo pipefail
H=${SDH_DIR:-/tmp/systemd-sandbox}
[ -f "$H/state/env" ] || { echo "install-torch: no sandbox running in $H (run start.sh first)" >&2; exit 1; }
. "$H/state/env"
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${TORCH_BIN_DIR:-$TOP/target/debug}
R=$SDH_ROOT
for b in torch-agent torchd torch torch-metrics torch-alerts torch-web; do
  [ -x "$BIN/$b" ] || { echo "install-torch: $BIN/$b missing; run cargo build --workspace first" >&2; exit 1; }
done
install -D -m755 "$BIN/torch-agent" "$R/usr/libexec/torch/torch-agent"
install -D -m755 "$BIN/torchd" "$R/usr/libexec/torch/torchd"
install -D -m755 "$BIN/torch" "$R/usr/bin/torch"
install -D -m755 "$BIN/torch-metrics" "$R/usr/libexec/torch/torch-metrics"
install -D -m755 "$BIN/torch-alerts" "$R/usr/libexec/torch/torch-alerts"
install -D -m755 "$BIN/torch-web" "$R/usr/libexec/torch/torch-web"
# The scripted test agents, when built (never a real LLM in tests or the demo).
for agent in "$BIN/torch-test-agent" "$TOP/target/debug/torch-test-agent"; do
  if [ -x "$agent" ]; then
    install -D -m755 "$agent" "$R/usr/local/bin/torch-test-agent"
    break
  fi
done
install -d "$R/etc/torch/agents"
# What the packages put under /usr (dist/ mirrors it), units aside.
(cd "$TOP/dist" && find usr -type f -not -path 'usr/lib/systemd/*') | while read -r f; do
  install -D -m644 "$TOP/dist/$f" "$R/$f"
done
"$SDH_EXEC" systemd-sysusers /usr/lib/sysusers.d/torch.conf
"$SDH_EXEC" systemd-tmpfiles --create /usr/lib/tmpfiles.d/torch.conf
# dbus-daemon reads the new policy file on ReloadConfig.
"$SDH_EXEC" busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig
# Units in /etc, over any the host's root (the sandbox's lower layer) has.
install -m644 "$TOP"/dist/usr/lib/systemd/system/* "$R/etc/systemd/system/"
"$SDH_EXEC" systemctl daemon-reload
