#!/bin/bash
# Torch demo: builds Torch, boots a real systemd in a sandbox, installs Torch
# into it, starts a small fleet (orchestrator, project manager, developer)
# running the scripted echo agent, sends them messages and shows what an
# operator sees: unit status, agent screens and journal lines.
# Run as root on Debian 12:  scripts/demo.sh      (DEMO_KEEP=1 keeps the sandbox)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TOP=$(pwd)
[ "$(id -u)" = 0 ] || { echo "demo: run as root (it boots a systemd sandbox)" >&2; exit 1; }
scripts/setup-debian.sh
step() { printf '\n\033[1m=== %s\033[0m\n' "$*"; }

step "build"
cargo build --workspace --bins 2>&1 | tail -1

export SDH_DIR=${SDH_DIR:-/tmp/torch-demo} SDH_NAME=${SDH_NAME:-torch-demo}
export SDH_BINDS="$SDH_DIR/share $TOP/target/debug"
step "boot a real systemd in a sandbox ($SDH_DIR)"
t0=$(date +%s%N)
scripts/sandbox/start.sh >/dev/null
echo "booted in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
[ "${DEMO_KEEP:-0}" = 1 ] || trap 'step "stop the sandbox"; scripts/sandbox/stop.sh' EXIT
. "$SDH_DIR/state/env"
sb() { "$SDH_EXEC" "$@"; }

step "install Torch into it (binaries, units) and define three agents"
scripts/sandbox/install-torch.sh
agent() { # name role parent
  cat > "$SDH_ROOT/etc/torch/agents/$1.toml" <<TOML
command = ["/usr/local/bin/torch-test-agent", "echo", "--record", "/tmp/$1.jsonl"]
role = "$2"
ready_pattern = "echo> "
TOML
  [ -z "$3" ] || echo "parent = \"$3\"" >> "$SDH_ROOT/etc/torch/agents/$1.toml"
  echo "/etc/torch/agents/$1.toml:"; sed 's/^/    /' "$SDH_ROOT/etc/torch/agents/$1.toml"
}
agent orchestrator orchestrator ""
agent pm-shop project-manager orchestrator
agent dev-shop developer pm-shop

step "start them (torch start = StartUnit over D-Bus, waits for READY=1)"
for a in orchestrator pm-shop dev-shop; do sb torch start "$a"; echo "started $a"; done
sb torch list

step "send messages (pasted literally, confirmed on the pane)"
sb torch send orchestrator 'Brief: build the shop. PMs report at 17:00.'
sb torch send pm-shop $'Plan:\n1. cart\n2. checkout $(not run) C-c'
printf 'Implement the cart.\nRun `cargo test` before you commit.\n' | sb torch send dev-shop -
for i in 1 2 3 4 5; do sb torch send dev-shop "status ping $i" & done; wait

step "what dev-shop's screen shows (torch capture dev-shop)"
sb torch capture dev-shop | grep -v '^$' | tail -12

step "systemctl status torch-agent@pm-shop"
sb systemctl --no-pager status torch-agent@pm-shop.service | head -14 || true

step "the journal: journalctl TORCH_AGENT=dev-shop (agent output + supervisor)"
sb journalctl --no-pager -o short TORCH_AGENT=dev-shop | tail -12

step "a crash is noticed and restarted by systemd"
pid=$(sb pgrep -o -f '^/usr/local/bin/torch-test-agent echo --record /tmp/dev-shop.jsonl')
sb kill -KILL "$pid"
for _ in $(seq 100); do
  n=$(sb systemctl show -P NRestarts torch-agent@dev-shop.service)
  s=$(sb systemctl show -P ActiveState torch-agent@dev-shop.service)
  [ "$n" -ge 1 ] && [ "$s" = active ] && break; sleep 0.1
done
echo "dev-shop: $s after $n restart(s)"
sb journalctl --no-pager -o cat -u torch-agent@dev-shop.service | grep -E "exited with status|Scheduled restart|is running" | tail -4
sb torch send dev-shop 'Welcome back.'

step "stop the fleet: systemctl stop torch.target"
sb systemctl stop torch.target
sb torch list
echo "tmux processes left: $(sb sh -c 'pgrep -c -x tmux || true')"
