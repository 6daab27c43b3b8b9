//! `--json` of the tools whose standard output may carry the backup
//! (workmem-backup, wm-seal, wm-snapshot) and of wm-prune: one JSON object
//! on standard error in place of the human summary. A failure is an object
//! too (usage errors included): `tool`, `version`, `exit` and `error`, or
//! the whole report when the run had made something before it failed.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;
use wmbackup::report::{Failed, Outcome};
use wmbackup::signals::Cancel;
use wmbackup::Error;

use crate::common;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `--json` is among the arguments (before a `--`): usage errors are then
/// reported as JSON too, before clap has said what the flags are.
fn requested(args: &[OsString]) -> bool {
    args.iter().skip(1).take_while(|a| *a != "--").any(|a| a == "--json")
}

/// [`common::parse_args`], with a usage error as a JSON object when `--json` was given.
pub fn parse_args<T: Parser>(prog: &str, args: Vec<OsString>) -> T {
    if !requested(&args) {
        return common::parse_args(prog, args);
    }
    common::parse_args_reporting(prog, args, &|message| {
        print(&Failed { tool: prog.into(), version: VERSION.into(), exit: 2, error: Some(message.into()) })
    })
}

/// [`common::main_with`] for a body that fills a report. Without `json`,
/// exactly that. With it, the report (or a [`Failed`] object when there is
/// none) is printed on standard error with the run's exit status and error.
pub fn main_with<R: Outcome>(
    prog: &str,
    json: bool,
    body: impl FnOnce(&Cancel, &mut Option<R>) -> Result<(), Error>,
) -> ExitCode {
    let mut report = None;
    if !json {
        return common::main_with(prog, |cancel| body(cancel, &mut report));
    }
    let result = common::watched(|cancel| body(cancel, &mut report));
    let (exit, error) = match &result {
        Ok(()) => (0, None),
        Err(e) => (
            e.exit_code(),
            Some(match e.hint(&common::spell) {
                Some(h) => format!("{e}; {h}"),
                None => e.to_string(),
            }),
        ),
    };
    match report {
        Some(mut r) => {
            r.set_outcome(exit, error);
            print(&r);
        }
        None => print(&Failed { tool: prog.into(), version: VERSION.into(), exit, error }),
    }
    ExitCode::from(exit)
}

/// The tool's name and version, for a report.
pub fn version() -> String {
    VERSION.to_string()
}

/// One compact line on standard error.
fn print(report: &impl Outcome) {
    // Strings, integers and one finite float: nothing here fails to serialise.
    let text =
        serde_json::to_string(report).unwrap_or_else(|_| r#"{"exit":1,"error":"report not serialisable"}"#.into());
    crate::common::say(&text);
}
