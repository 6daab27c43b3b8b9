//! Where the Unixes differ, and the one switch that chooses.
//!
//! Linux has calls the other Unixes lack: unnamed files (`O_TMPFILE`) and
//! linking them by descriptor, a writeback hint (`sync_file_range`), page
//! cache advice (`posix_fadvise`), wider pipes (`F_SETPIPE_SZ`), `pipe2` and
//! `sigtimedwait`. The Linux half uses them; the portable half is what macOS
//! and FreeBSD run: an equivalent where correctness needs one, nothing where
//! the call was only an optimisation. Both halves have the same functions,
//! so the rooms that use them (`output`, `spool`, `signals`) read the same
//! everywhere, and each difference is written once, here.
//!
//! The `portable` cargo feature takes the portable half on Linux too, so
//! that the tests exercise, on every run, the code a Mac runs.
//!
//! Durability ([`full_sync`]) is the one difference that follows the vendor
//! rather than the switch: Apple's `fsync` leaves the data in the drive's
//! cache, and only `F_FULLFSYNC` flushes it.

use std::ffi::OsStr;
use std::fs::File;
use std::io;

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::Mode;
use nix::unistd;

#[cfg(all(target_os = "linux", not(feature = "portable")))]
#[path = "linux.rs"]
mod imp;
#[cfg(any(not(target_os = "linux"), feature = "portable"))]
#[path = "portable.rs"]
mod imp;

pub use imp::*;

/// True when the Linux fast paths are compiled in: Linux, without the
/// `portable` feature. The tests read it to know which guarantees to check.
pub const LINUX_FAST_PATHS: bool = cfg!(all(target_os = "linux", not(feature = "portable")));

/// The name of the paths compiled in, for messages and `--version`-like reports.
pub const PATHS: &str = if LINUX_FAST_PATHS { "linux" } else { "portable" };

/// A file's identity, device and inode, from `fstat`/`fstatat`, in the
/// types `std::fs::Metadata` uses: `dev_t` is `u64` on Linux and FreeBSD but
/// `i32` on macOS, so that the two can be compared everywhere.
#[allow(clippy::unnecessary_cast)] // a cast on Linux, not on macOS
pub fn file_id(st: &nix::sys::stat::FileStat) -> (u64, u64) {
    (st.st_dev as u64, st.st_ino as u64)
}

/// 0600: read and write for the owner, nothing for anyone else.
pub(crate) fn private_mode() -> Mode {
    Mode::S_IRUSR | Mode::S_IWUSR
}

/// Renames `from` to `to` inside `dir` unless `to` exists (then EEXIST),
/// the way [`rename_noreplace`] takes where the kernel or the file system
/// has no `RENAME_NOREPLACE`: a hard link (which never replaces a name),
/// then the old name removed.
fn link_then_unlink(dir: &File, from: &OsStr, to: &OsStr) -> Result<(), Errno> {
    unistd::linkat(dir, from, dir, to, AtFlags::empty())?;
    let _ = unistd::unlinkat(dir, from, unistd::UnlinkatFlags::NoRemoveDir);
    Ok(())
}

/// The running user's id (effective: the one the kernel checks).
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { nix::libc::geteuid() }
}

/// `name (uid N)` for a user id, or `uid N` when the system knows no name
/// for it: for messages that name a file's owner.
pub fn user_name(uid: u32) -> String {
    let mut buf = vec![0u8; 4096];
    // SAFETY: a zeroed passwd is a valid out-parameter for getpwuid_r.
    let mut pw: nix::libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut nix::libc::passwd = std::ptr::null_mut();
    // SAFETY: buffers we own, with their true lengths.
    let rc = unsafe { nix::libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut found) };
    let name = (rc == 0 && !found.is_null() && !pw.pw_name.is_null())
        // SAFETY: getpwuid_r set pw_name to a NUL-terminated string inside `buf`.
        .then(|| unsafe { std::ffi::CStr::from_ptr(pw.pw_name) }.to_string_lossy().into_owned());
    match name {
        Some(n) => format!("{n} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

/// `name (gid N)` for a group id, or `gid N`.
pub fn group_name(gid: u32) -> String {
    let mut buf = vec![0u8; 16384];
    // SAFETY: a zeroed group is a valid out-parameter for getgrgid_r.
    let mut gr: nix::libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut nix::libc::group = std::ptr::null_mut();
    // SAFETY: buffers we own, with their true lengths.
    let rc = unsafe { nix::libc::getgrgid_r(gid, &mut gr, buf.as_mut_ptr().cast(), buf.len(), &mut found) };
    let name = (rc == 0 && !found.is_null() && !gr.gr_name.is_null())
        // SAFETY: getgrgid_r set gr_name to a NUL-terminated string inside `buf`.
        .then(|| unsafe { std::ffi::CStr::from_ptr(gr.gr_name) }.to_string_lossy().into_owned());
    match name {
        Some(n) => format!("{n} (gid {gid})"),
        None => format!("gid {gid}"),
    }
}

/// The most memory this process may take by its own limits: the lower soft
/// limit of `RLIMIT_DATA` (the heap and private mappings; Linux counts
/// mappings since 4.7) and `RLIMIT_AS`; `None` when neither is set.
#[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux and macOS, i64 on FreeBSD
pub fn memory_limit() -> Option<u64> {
    let soft = |resource| {
        let mut l = nix::libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit fills the struct we own.
        let ok = unsafe { nix::libc::getrlimit(resource, &mut l) } == 0;
        (ok && l.rlim_cur != nix::libc::RLIM_INFINITY).then_some(l.rlim_cur as u64)
    };
    [soft(nix::libc::RLIMIT_DATA), soft(nix::libc::RLIMIT_AS)].into_iter().flatten().min()
}

/// Writes `data` into `file` at `offset` through the page cache, a
/// megabyte at a time, asking `go` before each.
fn write_cached(file: &File, data: &[u8], offset: u64, go: &dyn Fn() -> io::Result<()>) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    const PIECE: usize = 1 << 20;
    for (i, piece) in data.chunks(PIECE).enumerate() {
        go()?;
        file.write_all_at(piece, offset + (i * PIECE) as u64)?;
    }
    Ok(())
}

/// Makes what was written to `file` (a file or a directory) durable: on
/// Apple systems `F_FULLFSYNC`, which also flushes the drive's own cache,
/// falling back to `fsync` where the file system does not support it (some
/// network and FUSE file systems); elsewhere `fsync`, which flushes the
/// drive's cache by itself on Linux and FreeBSD.
pub fn full_sync(file: &File) -> io::Result<()> {
    #[cfg(target_vendor = "apple")]
    {
        use std::os::fd::AsRawFd;
        let fd = file.as_raw_fd();
        let call = |rc: nix::libc::c_int| if rc == -1 { Err(io::Error::last_os_error()) } else { Ok(()) };
        // SAFETY: plain fcntl and fsync calls on a descriptor we own.
        fall_back_when_unsupported(
            || call(unsafe { nix::libc::fcntl(fd, nix::libc::F_FULLFSYNC) }),
            || call(unsafe { nix::libc::fsync(fd) }),
        )
    }
    #[cfg(not(target_vendor = "apple"))]
    {
        file.sync_all()
    }
}

/// Runs `full`, retrying EINTR; when the file system says it cannot do that
/// (ENOTSUP, EOPNOTSUPP, EINVAL, ENOTTY), runs `plain` instead. Any other
/// error is the answer: an I/O error is never hidden behind a weaker sync.
#[cfg(any(target_vendor = "apple", test))]
fn fall_back_when_unsupported(
    mut full: impl FnMut() -> io::Result<()>,
    mut plain: impl FnMut() -> io::Result<()>,
) -> io::Result<()> {
    use nix::libc::{EINTR, EINVAL, ENOTSUP, ENOTTY, EOPNOTSUPP};
    let retry = |f: &mut dyn FnMut() -> io::Result<()>| loop {
        match f() {
            Err(e) if e.raw_os_error() == Some(EINTR) => continue,
            other => return other,
        }
    };
    match retry(&mut full) {
        Err(e) if matches!(e.raw_os_error(), Some(c) if [ENOTSUP, EOPNOTSUPP, EINVAL, ENOTTY].contains(&c)) => {
            retry(&mut plain)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn os(code: i32) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(code))
    }

    #[test]
    fn a_full_sync_the_file_system_cannot_do_falls_back_to_fsync_but_an_io_error_is_reported() {
        use nix::libc::{EINTR, EINVAL, EIO, ENOTSUP};
        let plain_calls = Cell::new(0);
        let plain = || {
            plain_calls.set(plain_calls.get() + 1);
            Ok(())
        };
        assert!(fall_back_when_unsupported(|| Ok(()), plain).is_ok());
        assert_eq!(plain_calls.get(), 0, "a full sync that works is enough");
        for unsupported in [ENOTSUP, EINVAL] {
            assert!(fall_back_when_unsupported(|| os(unsupported), plain).is_ok());
        }
        assert_eq!(plain_calls.get(), 2, "unsupported: fsync instead");
        let e = fall_back_when_unsupported(|| os(EIO), plain).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(EIO), "an I/O error is the answer");
        assert_eq!(plain_calls.get(), 2, "and no weaker sync hides it");
        let tries = Cell::new(0);
        let interrupted_once = || {
            tries.set(tries.get() + 1);
            if tries.get() == 1 {
                os(EINTR)
            } else {
                Ok(())
            }
        };
        assert!(fall_back_when_unsupported(interrupted_once, plain).is_ok());
        assert_eq!((tries.get(), plain_calls.get()), (2, 2), "EINTR is retried, not a reason to fall back");
    }

    #[test]
    fn an_uncached_write_puts_every_byte_in_place_whatever_the_length_and_leaves_the_file_as_it_was_opened() {
        use std::os::unix::fs::FileExt;
        let d = tempfile::tempdir().unwrap();
        for len in [0, 1, 4095, 4096, 4097, (4 << 20) - 1, (4 << 20) + 4096 + 3, 9 << 20] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 253) as u8).collect();
            let path = d.path().join(format!("f{len}"));
            let f = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path).unwrap();
            let before = nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_GETFL).unwrap();
            write_uncached(&f, &data, || Ok(())).unwrap();
            assert_eq!(nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_GETFL).unwrap(), before, "{len}: flags restored");
            // A small positional write after it, as wm-restore's journal mode is.
            if len > 20 {
                f.write_all_at(&[2, 2], 18).unwrap();
            }
            let mut want = data.clone();
            if len > 20 {
                want[18..20].copy_from_slice(&[2, 2]);
            }
            assert!(std::fs::read(&path).unwrap() == want, "{len} bytes read back");
        }
        let f = std::fs::File::create(d.path().join("stopped")).unwrap();
        let e = write_uncached(&f, &[0u8; 1 << 20], || Err(io::Error::other("stop"))).unwrap_err();
        assert_eq!(e.to_string(), "stop", "go is asked before the first piece");
    }

    #[test]
    fn full_sync_syncs_a_file_and_a_directory() {
        let d = tempfile::tempdir().unwrap();
        let f = File::create(d.path().join("f")).unwrap();
        full_sync(&f).unwrap();
        full_sync(&File::open(d.path()).unwrap()).unwrap();
    }
}
