#!/bin/bash
# Tear down Torch's systemd sandbox started by start.sh (same SDH_DIR). Idempotent.
# Project copy of the shared reference (shared/systemd-sandbox/stop.sh beside the project): it only ever
# signals processes that are provably ours (PID + exe + cgroup/cmdline checks), then removes
# our cgroup subtree. State under $SDH_PERSIST (if the sandbox had one) is left untouched.
# Env: SDH_DIR (default /tmp/systemd-sandbox). SDH_NAME is accepted for symmetry; the cgroup
# path is read from $SDH_DIR/state/cgroup.
set -uo pipefail
H=${SDH_DIR:-/tmp/systemd-sandbox}
ST=$H/state
CPID=$(cat "$ST/pid" 2>/dev/null || true)
UPID=$(cat "$ST/unshare.pid" 2>/dev/null || true)
CG=$(cat "$ST/cgroup" 2>/dev/null || true)
# only ever signal processes that are provably ours (guards against PID reuse after a crash):
#  - container init: systemd (or stage2 bash) living in OUR cgroup subtree
#  - supervisor: the unshare process whose command line names OUR state dir
in_our_cg() { [ -n "$CG" ] && grep -q "^0::/${CG##*/}/" "/proc/$1/cgroup" 2>/dev/null; }
is_ours() {
  [ -n "${1:-}" ] && [ -d "/proc/$1" ] || return 1
  case "$(readlink "/proc/$1/exe")" in
    /usr/lib/systemd/systemd|/usr/bin/bash) in_our_cg "$1" ;;
    /usr/bin/unshare) tr '\0' ' ' < "/proc/$1/cmdline" | grep -qF "$ST/stage2.sh" ;;
    *) return 1 ;;
  esac
}
gone() { ! [ -d "/proc/$1" ] || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]; }
if is_ours "$CPID"; then
  kill -s SIGRTMIN+4 "$CPID" 2>/dev/null     # systemd: clean poweroff
  for _ in $(seq 150); do gone "$CPID" && break; sleep 0.1; done
  gone "$CPID" || { echo "poweroff timed out, SIGKILL pid-ns init $CPID" >&2; kill -KILL "$CPID" 2>/dev/null; }
fi
if is_ours "$UPID"; then
  for _ in $(seq 50); do gone "$UPID" && break; sleep 0.1; done
  gone "$UPID" || kill -KILL "$UPID" 2>/dev/null
fi
# remove our cgroup subtree (deepest first); kill leftovers if any (cgroup.kill needs linux>=5.14)
if [ -n "$CG" ] && [ -d "$CG" ]; then
  [ -e "$CG/cgroup.kill" ] && echo 1 > "$CG/cgroup.kill" 2>/dev/null
  for _ in $(seq 50); do
    find "$CG" -depth -type d -exec rmdir {} \; 2>/dev/null
    [ -d "$CG" ] || break; sleep 0.1
  done
  [ -d "$CG" ] && echo "warning: could not remove $CG" >&2
fi
case "$CG" in "$ST"/cg2/*) umount "$ST/cg2" 2>/dev/null;; esac
rm -f "$ST/pid" "$ST/unshare.pid" "$ST/released" "$ST/env"
echo "systemd-sandbox stopped"
