#!/bin/bash
# Torch's systemd sandbox: boot a REAL systemd (PID 1 of its own PID/mount/cgroup/UTS/IPC/net
# namespaces) on top of a copy-on-write overlay of the host root, with dbus + journald, for
# Torch's integration tests (tests/src/lib.rs drives it) and demos.
#
# This is the project's own copy of the shared reference harness
# (shared/systemd-sandbox/start.sh beside the project on the dev/CI machines), adapted for Torch: extra
# masked units, SDH_PERSIST, several sandboxes side by side. Every safety measure of the
# reference is kept: its own cgroup, a cgroup namespace, read-only /proc/sys, PID checks on stop.
# NEVER start systemd (or `systemd --user`) on these machines any other way: a systemd started
# from the root cgroup moves every process of the machine into its own cgroups, and without a
# read-only /proc/sys it rewrites the host's kernel settings.
#
# Needs: root, util-linux (unshare/nsenter), systemd + dbus installed on the host, overlayfs,
# cgroup2 available (hybrid or unified host). No apt install, no image download, no nspawn.
# Idempotent: if the container is already up, it just prints the env again.
#
# Env knobs:
#   SDH_DIR     state dir (default: /tmp/systemd-sandbox)
#   SDH_NAME    name (cgroup + hostname) (default: sdh)
#   SDH_BINDS   space-separated host paths bind-mounted read-write at the same path inside
#               (default: "$SDH_DIR/share"). Use it for the project's target/ dir: files written
#               to the host root AFTER boot are not reliably visible through the overlay lower.
#   SDH_TARGET  unit to boot (default: multi-user.target)
#   SDH_NET     "private" (default: own netns, only lo) or "host" (share the host network)
#   SDH_TIMEOUT seconds to wait for boot (default 60)
#   SDH_PERSIST host directory (created if missing) bind-mounted read-write at /var/lib/torch
#               inside, so state survives a stop/start of the sandbox (default: unset = none)
#
# Several sandboxes run side by side when each has its own SDH_NAME and SDH_DIR (the cgroup is
# <cgroup2 mount>/$SDH_NAME, the state lives under $SDH_DIR). Stop with stop.sh (same env).
set -euo pipefail

SELF=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
H=${SDH_DIR:-/tmp/systemd-sandbox}
NAME=${SDH_NAME:-sdh}
ST=$H/state
ROOT=$ST/root
BINDS=${SDH_BINDS:-$H/share}
TARGET=${SDH_TARGET:-multi-user.target}
NET=${SDH_NET:-private}
TIMEOUT=${SDH_TIMEOUT:-60}
PERSIST=${SDH_PERSIST:-}

die() { echo "systemd-sandbox: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"
[ -x /lib/systemd/systemd ] || die "/lib/systemd/systemd missing (apt-get install systemd)"
command -v dbus-daemon >/dev/null || die "dbus-daemon missing (apt-get install dbus)"

print_env() {
  local pid=$1
  cat > "$ST/env" <<EOF
# source me:  . $ST/env
export SDH_PID=$pid
export SDH_ROOT=/proc/$pid/root
export SDH_EXEC="$H/bin/sdh-exec"
export SDH_DBUS_SYSTEM_BUS_ADDRESS=unix:path=/proc/$pid/root/run/dbus/system_bus_socket
export SDH_SYSTEMD_PRIVATE_ADDRESS=unix:path=/proc/$pid/root/run/systemd/private
EOF
  cat "$ST/env"
  cat <<EOF
# Usage from a test (host side):
#   $H/bin/sdh-exec systemctl daemon-reload          # run any command inside the container
#   cp foo@.service /proc/$pid/root/etc/systemd/system/   # install unit files from the host
#   DBUS_SYSTEM_BUS_ADDRESS=\$SDH_DBUS_SYSTEM_BUS_ADDRESS busctl --system ...   # D-Bus from host
#   (zbus: zbus::connection::Builder::address(\$SDH_DBUS_SYSTEM_BUS_ADDRESS))
EOF
}

alive() { [ -n "${1:-}" ] && [ -d "/proc/$1" ] && [ "$(readlink "/proc/$1/exe" 2>/dev/null)" = /usr/lib/systemd/systemd ]; }

mkdir -p "$ST" "$H/bin"
for b in $BINDS; do mkdir -p "$b" 2>/dev/null || true; done
if [ -n "$PERSIST" ]; then
  case "$PERSIST" in /*) ;; *) die "SDH_PERSIST must be an absolute path";; esac
  mkdir -p "$PERSIST"
fi
case "$NAME" in *[!A-Za-z0-9-]*|''|-*) die "SDH_NAME must be hostname-legal (letters, digits, '-')";; esac

# --- already up? ---------------------------------------------------------------------------
if [ -f "$ST/pid" ] && alive "$(cat "$ST/pid")"; then
  print_env "$(cat "$ST/pid")"; exit 0
fi
# stale state from a crashed run: clean it
if [ -f "$ST/pid" ] || [ -f "$ST/unshare.pid" ]; then SDH_DIR="$H" "$SELF/stop.sh" >/dev/null 2>&1 || true; fi

# --- cgroup2: find the host's v2 mount (hybrid: /sys/fs/cgroup/unified, unified: /sys/fs/cgroup) -
CG2=$(awk '$3=="cgroup2"{print $2; exit}' /proc/self/mounts)
if [ -z "$CG2" ]; then
  # legacy-only host: the v2 hierarchy still exists in the kernel, mount it privately
  mkdir -p "$ST/cg2"; mount -t cgroup2 none "$ST/cg2"; CG2=$ST/cg2
fi
CG=$CG2/$NAME
mkdir -p "$CG/payload" "$CG/supervisor"
echo "$CG" > "$ST/cgroup"

# --- helper scripts -------------------------------------------------------------------------
cat > "$H/bin/sdh-exec" <<EOF
#!/bin/sh
# run a command inside the harness container (all its namespaces, its root)
pid=\$(cat "$ST/pid") || exit 1
exec env -u DBUS_SYSTEM_BUS_ADDRESS -u DBUS_SESSION_BUS_ADDRESS -u XDG_RUNTIME_DIR -u NOTIFY_SOCKET \\
  nsenter -t "\$pid" -m -u -i -n -p -C -- "\$@"
EOF
chmod +x "$H/bin/sdh-exec"

# stage2 runs as PID 1 of the new namespaces, builds the root, then execs systemd.
cat > "$ST/stage2.sh" <<'EOS'
#!/bin/bash
set -euo pipefail
ST=$1; ROOT=$2; NAME=$3; TARGET=$4; BINDS=$5; NETMODE=$6; PERSIST=${7:-}
# wait until the host side moved our `unshare` parent out of the payload cgroup
for _ in $(seq 100); do [ -e "$ST/released" ] && break; sleep 0.05; done
mount --make-rprivate /
mkdir -p "$ST/ovl" "$ROOT"
mount -t tmpfs -o mode=755 sdh-ovl "$ST/ovl"
U=$ST/ovl/upper; mkdir -p "$U" "$ST/ovl/work"
# ---- seed the upper layer: config that differs from the host ----
mkdir -p "$U/etc/systemd/system" "$U/etc/systemd/journald.conf.d" "$U/etc/systemd/system.conf.d"
echo "$NAME" > "$U/etc/hostname"
printf '[Journal]\nStorage=volatile\nRateLimitBurst=0\n' > "$U/etc/systemd/journald.conf.d/sdh.conf"
printf '[Manager]\nShowStatus=no\nDefaultTimeoutStopSec=10s\n' > "$U/etc/systemd/system.conf.d/sdh.conf"
# mask what a headless test container must not run: host-enabled daemons/timers and gettys
mask() { ln -sf /dev/null "$U/etc/systemd/system/$1"; }
for w in /etc/systemd/system/*.target.wants/*; do
  [ -e "$w" ] || [ -L "$w" ] || continue
  u=${w##*/}
  case "$u" in dbus*|systemd-journald*|machines.target) continue;; esac
  mask "$u"
done
for u in getty.target console-getty.service getty@tty1.service serial-getty@.service \
         systemd-timesyncd.service \
         apt-daily.timer apt-daily-upgrade.timer man-db.timer e2scrub_all.timer fstrim.timer \
         dpkg-db-backup.timer e2scrub_reap.service postgresql.service systemd-firstboot.service \
         proc-sys-fs-binfmt_misc.automount \
         ssh.service ssh.socket sshd.service cron.service anacron.service anacron.timer atd.service \
         rsyslog.service syslog.socket exim4.service postfix.service unattended-upgrades.service \
         systemd-pstore.service systemd-networkd-wait-online.service NetworkManager.service \
         ModemManager.service networking.service docker.service docker.socket containerd.service \
         logrotate.timer sysstat.service smartd.service; do mask "$u"; done
# ---- root = overlay(host / , tmpfs upper) ----
mount -t overlay sdh-root -o "lowerdir=/,upperdir=$U,workdir=$ST/ovl/work" "$ROOT"
R=$ROOT
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
# like nspawn: kernel-global knobs read-only, so the container's PID 1 / systemd-sysctl cannot
# change the HOST (fs.file-max bump, sysctl.d, sysrq). Per-netns /proc/sys/net stays writable.
mount --bind "$R/proc/sys" "$R/proc/sys"
[ "$NETMODE" = private ] && { mount --bind "$R/proc/sys/net" "$R/proc/sys/net"; }
mount -o remount,bind,ro "$R/proc/sys"
[ "$NETMODE" = private ] && mount -o remount,bind,rw "$R/proc/sys/net"
[ -e "$R/proc/sysrq-trigger" ] && { mount --bind "$R/proc/sysrq-trigger" "$R/proc/sysrq-trigger"; mount -o remount,bind,ro "$R/proc/sysrq-trigger"; }
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$R/sys/fs/cgroup"   # our cgroupns root
mount -t tmpfs -o mode=755,nosuid,nodev,size=512m tmpfs "$R/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/tmp"
# minimal /dev (no host block devices, no udev)
mount -t tmpfs -o mode=755,nosuid,size=4m tmpfs "$R/dev"
for d in null zero full random urandom tty; do touch "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"; done
touch "$R/dev/console"; mount --bind /dev/null "$R/dev/console"
mkdir -p "$R/dev/pts" "$R/dev/shm" "$R/dev/mqueue"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/dev/shm"
ln -s /proc/self/fd "$R/dev/fd"; ln -s /proc/self/fd/0 "$R/dev/stdin"
ln -s /proc/self/fd/1 "$R/dev/stdout"; ln -s /proc/self/fd/2 "$R/dev/stderr"
for b in $BINDS; do mkdir -p "$R$b"; mount --rbind "$b" "$R$b"; done
if [ -n "$PERSIST" ]; then mkdir -p "$R/var/lib/torch"; mount --rbind "$PERSIST" "$R/var/lib/torch"; fi
hostname "$NAME"
cd "$R"; mkdir -p "$R/.sdh-oldroot" 2>/dev/null || mkdir -p .sdh-oldroot
pivot_root . .sdh-oldroot
cd /
umount -l /.sdh-oldroot; rmdir /.sdh-oldroot 2>/dev/null || true
# Shared propagation inside the container, as systemd sets it on a real
# machine (it leaves that to the container manager): units' credentials
# (LoadCredential=) are mounted in a child namespace and must propagate.
# The namespace was made private above, so nothing reaches the host.
mount --make-rshared /
export container=sdh-unshare
exec /lib/systemd/systemd --unit="$TARGET" --log-target=journal-or-kmsg
EOS
chmod +x "$ST/stage2.sh"

# --- launch ---------------------------------------------------------------------------------
rm -f "$ST/released" "$ST/pid"
NETFLAG=--net; [ "$NET" = host ] && NETFLAG=
t0=$(date +%s.%N)
(
  echo $BASHPID > "$CG/payload/cgroup.procs"
  exec setsid unshare --pid --fork --kill-child --mount --cgroup --uts --ipc $NETFLAG \
    "$ST/stage2.sh" "$ST" "$ROOT" "$NAME" "$TARGET" "$BINDS" "$NET" "$PERSIST"
) </dev/null >"$ST/stage2.log" 2>&1 &
UPID=$!
echo "$UPID" > "$ST/unshare.pid"
# find PID 1 of the container (child of unshare), then move unshare itself out of payload
CPID=
for _ in $(seq 100); do
  CPID=$(cat "/proc/$UPID/task/$UPID/children" 2>/dev/null | awk '{print $1}') || true
  [ -n "$CPID" ] && break; sleep 0.05
done
[ -n "$CPID" ] || die "container init did not appear; see $ST/stage2.log"
echo "$UPID" > "$CG/supervisor/cgroup.procs"
touch "$ST/released"
# wait for exec into systemd
for _ in $(seq 200); do alive "$CPID" && break; kill -0 "$UPID" 2>/dev/null || break; sleep 0.05; done
alive "$CPID" || die "systemd did not start; see $ST/stage2.log: $(tail -5 "$ST/stage2.log")"
echo "$CPID" > "$ST/pid"
# wait for the manager's private socket, then for boot to finish
for _ in $(seq $((TIMEOUT * 20))); do [ -S "/proc/$CPID/root/run/systemd/private" ] && break; sleep 0.05; done
state=$(timeout "$TIMEOUT" "$H/bin/sdh-exec" systemctl is-system-running --wait 2>&1) || true
t1=$(date +%s.%N)
echo "# booted: state=$state in $(echo "$t1 - $t0" | bc 2>/dev/null || awk "BEGIN{print $t1-$t0}")s" >&2
print_env "$CPID"
case "$state" in
  running) ;;
  degraded) "$H/bin/sdh-exec" systemctl --failed --no-legend >&2 || true ;;   # usable, but say why
  *) "$H/bin/sdh-exec" journalctl -b --no-pager -n 40 >&2 || true
     die "container did not finish booting (state '$state'); stop it with $SELF/stop.sh" ;;
esac
