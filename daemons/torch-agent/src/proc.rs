//! The raw process and terminal calls of the health loop, each behind a
//! safe function: a pidfd that becomes readable when a process exits, the
//! unread-input count of the pane's terminal, and whether a process is
//! stopped. All the supervisor's `unsafe` code is here.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A descriptor that becomes readable when process `pid` exits (pidfd;
/// Linux 5.3 and later). `None` where the kernel has no pidfd: the health
/// ticks still notice the exit, later.
pub fn watch_exit(pid: u32) -> Option<AsyncFd<OwnedFd>> {
    let pid = nix::libc::pid_t::try_from(pid).ok()?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the kernel just gave us this descriptor; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: the OwnedFd is moved into the AsyncFd, which keeps it open and
    // unchanged until the AsyncFd is dropped.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.ok()
}

nix::ioctl_read_bad!(fionread, nix::libc::FIONREAD, nix::libc::c_int);

/// Bytes typed into the pane's terminal that its program has not read yet.
pub fn pending_input(tty: &str) -> Option<usize> {
    if !tty.starts_with("/dev/pts/") {
        return None;
    }
    // Opened only for the ioctl and closed at once: holding the pane's
    // terminal open would hide its hang-up from tmux.
    let fd = open(
        tty,
        OFlag::O_RDONLY | OFlag::O_NOCTTY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    // SAFETY: `open` just returned this descriptor and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut n: nix::libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer we pass.
    unsafe { fionread(fd.as_raw_fd(), &mut n) }.ok()?;
    usize::try_from(n).ok()
}

/// Whether `pid` is stopped by a signal or a tracer (state T or t).
pub fn process_stopped(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The command name may hold spaces and parentheses; the state follows the last ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|s| s == "T" || s == "t")
}

#[cfg(test)]
mod cgroup_tests {
    use super::within;

    #[test]
    fn a_process_is_within_its_unit_and_below_it_only() {
        let own = "/system.slice/system-torch\\x2dagent.slice/torch-agent@a.service";
        assert!(within(own, own));
        assert!(within(&format!("{own}/sub"), own));
        assert!(!within(&format!("{own}x"), own));
        assert!(!within(
            "/system.slice/system-torch\\x2dagent.slice/torch-agent@b.service",
            own
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_not_stopped() {
        assert!(!process_stopped(std::process::id()));
        assert!(!process_stopped(u32::MAX));
    }

    #[test]
    fn only_pane_terminals_are_asked() {
        assert_eq!(pending_input("/etc/passwd"), None);
        assert_eq!(pending_input("/dev/pts/no-such-terminal"), None);
    }
}

/// The control group of process `pid` (the cgroup v2 line of
/// `/proc/PID/cgroup`); `None` when the process is gone or unreadable.
pub fn cgroup_of(pid: i32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

/// Whether a process in cgroup `peer` runs inside the unit whose cgroup is
/// `own` (the same cgroup or one below it).
pub fn within(peer: &str, own: &str) -> bool {
    peer == own
        || peer
            .strip_prefix(own)
            .is_some_and(|rest| rest.starts_with('/'))
}
