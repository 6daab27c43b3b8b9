//! No secret in a core dump: what a tool that holds keys or plaintext does
//! first thing.
//!
//! [`no_core_dumps`] sets `RLIMIT_CORE` to 0 (soft and hard, so that nothing
//! this process starts can raise it again) and, on Linux, `PR_SET_DUMPABLE`
//! to 0: the kernel then writes no core for it even through a `core_pattern`
//! pipe (unless the administrator set `fs.suid_dumpable` to 2), and a process
//! of the same user can no longer `ptrace` it or read its `/proc/PID/mem`.
//! [`dont_dump`] marks a buffer's pages `MADV_DONTDUMP` (Linux), for the
//! case where a core is made all the same.

use std::io;

/// Makes this process produce no core dump. Lowering a limit and dropping
/// the dumpable flag are always allowed: a failure is a real surprise, and
/// the caller stops rather than run unprotected.
pub fn no_core_dumps() -> io::Result<()> {
    let zero = nix::libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: a plain system call with a valid rlimit.
    if unsafe { nix::libc::setrlimit(nix::libc::RLIMIT_CORE, &zero) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes no pointers.
        if unsafe { nix::libc::prctl(nix::libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// What the kernel says of this process: (`RLIMIT_CORE` soft limit,
/// dumpable flag; `None` where there is no such flag).
pub fn state() -> (u64, Option<bool>) {
    let mut lim = nix::libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit fills the struct we own.
    let core = if unsafe { nix::libc::getrlimit(nix::libc::RLIMIT_CORE, &mut lim) } == 0 { lim.rlim_cur } else { 0 };
    #[cfg(target_os = "linux")]
    // SAFETY: PR_GET_DUMPABLE takes no pointers.
    let dumpable = Some(unsafe { nix::libc::prctl(nix::libc::PR_GET_DUMPABLE, 0, 0, 0, 0) } == 1);
    #[cfg(not(target_os = "linux"))]
    let dumpable = None;
    (core as u64, dumpable)
}

/// Asks the kernel to leave the whole pages inside `ptr..ptr+len` out of
/// any core dump (`MADV_DONTDUMP`, Linux; nothing elsewhere). The partial
/// pages at either end are shared with other allocations and stay in: with
/// [`no_core_dumps`] in force no core is written at all, so this is the
/// second line, not the first. Advice only: a refusal changes nothing.
pub fn dont_dump(ptr: *const u8, len: usize) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { nix::libc::sysconf(nix::libc::_SC_PAGESIZE) };
        if page <= 0 || ptr.is_null() {
            return;
        }
        let page = page as usize;
        let start = (ptr as usize).div_ceil(page) * page;
        let end = (ptr as usize).saturating_add(len) / page * page;
        if end > start {
            // SAFETY: the range lies inside memory the caller owns; madvise
            // with MADV_DONTDUMP changes no content.
            unsafe { nix::libc::madvise(start as *mut nix::libc::c_void, end - start, nix::libc::MADV_DONTDUMP) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_it_no_core_can_be_made() {
        // In a child, so that the test process itself keeps its settings.
        // SAFETY: the child only makes system calls and exits.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let ok = no_core_dumps().is_ok() && state().0 == 0 && state().1 != Some(true);
                // Raising the limit again must fail: the hard limit is 0 too.
                let raise = nix::libc::rlimit { rlim_cur: 1 << 20, rlim_max: 1 << 20 };
                // SAFETY: a plain system call.
                let raised = unsafe { nix::libc::setrlimit(nix::libc::RLIMIT_CORE, &raise) } == 0;
                let is_root = crate::platform::euid() == 0;
                // SAFETY: _exit in the child.
                unsafe { nix::libc::_exit(if ok && (!raised || is_root) { 0 } else { 1 }) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }

    #[test]
    fn dont_dump_takes_any_range() {
        let v = vec![7u8; 3 * 4096 + 100];
        dont_dump(v.as_ptr(), v.len());
        dont_dump(v.as_ptr(), 10);
        dont_dump(std::ptr::null(), 0);
        assert!(v.iter().all(|&b| b == 7), "advice changes no content");
    }
}
