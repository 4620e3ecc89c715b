#!/bin/bash
# Torch demo: builds Torch, boots a real systemd in a sandbox, installs Torch
# into it, starts the hub, spawns a small fleet (orchestrator, project
# manager, developer) running the scripted echo agent, sends messages along
# the hierarchy and shows what an operator sees: status tree, message
# history, agent screens, unit status and journal lines.
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

step "install Torch into it (binaries, units, D-Bus policy) and start the hub"
scripts/sandbox/install-torch.sh
sb systemctl start torch.service
sb systemctl --no-pager status torch.service | sed -n '1,7p' || true

step "spawn a fleet through the hub (torch spawn = definition + StartUnit over D-Bus)"
# A project the agents share through their group (docs/security.md).
sb install -d -g torch-agent -m 2770 /srv/shop
printf 'You are the project manager of the shop.\nSplit the work and report to the orchestrator.\n' > "$SDH_ROOT/tmp/brief.txt"
spawn() { # name role parent [brief]
  local args=(spawn "$1" --role "$2" --workdir /srv/shop)
  [ -z "$3" ] || args+=(--parent "$3")
  [ -z "${4:-}" ] || args+=(--brief "$4")
  sb torch "${args[@]}" -- /usr/local/bin/torch-test-agent echo --record "/var/lib/torch-agent/$1/record.jsonl"
}
spawn orchestrator orchestrator ""
spawn pm-shop project-manager orchestrator /tmp/brief.txt
spawn dev-shop developer pm-shop
sb torch status

step "messages through the hub: stored first, delivered in order, confirmed on the pane"
sb torch send --wait orchestrator 'Brief: build the shop. PMs report at 17:00.'
sb env TORCH_AGENT=dev-shop torch send --wait pm-shop $'Cart done.\nTests: `cargo test` green; $(not run) C-c'
printf 'Implement the checkout next.\n' | sb env TORCH_AGENT=pm-shop torch send --wait dev-shop -
for i in 1 2 3 4 5; do sb torch send dev-shop "status ping $i" 2>/dev/null & done; wait
echo "and one the policy refuses (an engineer may only talk to its project manager):"
sb env TORCH_AGENT=dev-shop torch send orchestrator 'skipping my PM' || true
sleep 1
sb torch messages

step "self-scheduled check-ins: systemd timers made by the hub"
sb env TORCH_AGENT=dev-shop torch schedule self --in 2s --note 'Check the test run, then report to pm-shop'
sb torch schedule pm-shop --every 30m --note 'Collect status from your engineers'
sb torch schedules
sb systemctl list-timers --no-pager 'torch-checkin@*' | head -4
sleep 3
sb torch inbox dev-shop --limit 2

step "what dev-shop's screen shows (torch capture dev-shop)"
sb torch capture dev-shop | grep -v '^$' | tail -12

step "systemctl status torch-agent@pm-shop"
sb systemctl --no-pager status torch-agent@pm-shop.service | head -14 || true

step "the journal: journalctl TORCH_AGENT=dev-shop (agent output + supervisor)"
sb journalctl --no-pager -o short TORCH_AGENT=dev-shop | tail -12

step "a crash is noticed and restarted by systemd"
pid=$(sb pgrep -o -f '^/usr/local/bin/torch-test-agent echo --record /var/lib/torch-agent/dev-shop/record.jsonl')
sb kill -KILL "$pid"
for _ in $(seq 100); do
  n=$(sb systemctl show -P NRestarts torch-agent@dev-shop.service)
  s=$(sb systemctl show -P ActiveState torch-agent@dev-shop.service)
  [ "$n" -ge 1 ] && [ "$s" = active ] && break; sleep 0.1
done
echo "dev-shop: $s after $n restart(s)"
sb journalctl --no-pager -o cat -u torch-agent@dev-shop.service | grep -E "agent program|Scheduled restart|is running" | tail -4
sb torch send --wait dev-shop 'Welcome back.'

step "stop the fleet: systemctl stop torch.target (the hub keeps the queue)"
sb systemctl stop torch.target
sb torch send dev-shop 'This waits in the queue until dev-shop is back.'
sb torch status
echo "tmux processes left: $(sb sh -c 'pgrep -c -x tmux || true')"
