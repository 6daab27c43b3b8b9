//! `-v`: the detail behind a backup tool's one-line summary, from the same
//! report `--json` prints.

use wmbackup::report::Backup;

use crate::common::note;

/// What was read, who can decrypt, and what was written.
pub fn backup(prog: &str, r: &Backup) {
    if let Some(s) = &r.source {
        note(
            prog,
            false,
            &format!("source {}: {} pages of {} bytes, {} journal", s.path, s.page_count, s.page_size, s.journal_mode),
        );
    }
    if let Some(m) = &r.method {
        let spool = r.spool.as_deref().unwrap_or("none (streamed)");
        note(prog, false, &format!("method {m}, spool {spool}"));
    }
    for k in &r.recipients {
        note(prog, false, &format!("recipient {} {}", k.kind, k.fingerprint));
    }
    if !r.sha256.is_empty() {
        note(prog, false, &format!("sha256 {}  {}", r.sha256, r.destination));
    }
}
