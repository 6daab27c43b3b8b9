//! `--json` of every tool: one JSON object in place of the human summary,
//! also on failure (usage errors included): `tool`, `version`, `exit` and
//! `error`, or the whole report when the run had made something before it
//! failed. The object goes to standard output whenever standard output
//! carries no data, and to standard error only when it carries the backup
//! stream (docs/json.md).

use std::ffi::OsString;
use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;
use wmbackup::report::{Failed, Outcome};
use wmbackup::signals::Cancel;
use wmbackup::Error;

use crate::common;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where the report goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Place {
    Stdout,
    Stderr,
}

impl Place {
    /// Standard output unless the data goes there. `streams`: the tool
    /// writes its data to standard output unless `--to` (`-o`, `--output`)
    /// names a file or directory (wm-seal, wm-snapshot, workmem-backup);
    /// `to` is the destination as given (`None` or `-`: standard output).
    pub fn for_data(streams: bool, to: Option<&std::path::Path>) -> Place {
        match to {
            _ if !streams => Place::Stdout,
            Some(p) if p != std::path::Path::new("-") && !p.as_os_str().is_empty() => Place::Stdout,
            _ => Place::Stderr,
        }
    }

    /// The same, from a raw command line (for a usage error, before clap
    /// has said what the flags are): the last `--to`, `-o` or `--output`.
    fn for_args(streams: bool, args: &[OsString]) -> Place {
        let mut to: Option<String> = None;
        let mut it = args.iter().skip(1).map(|a| a.to_string_lossy()).take_while(|a| a != "--");
        while let Some(a) = it.next() {
            if matches!(a.as_ref(), "--to" | "-to" | "-o" | "--output") {
                to = it.next().map(|v| v.into_owned());
            } else if let Some(v) = a.strip_prefix("--to=").or_else(|| a.strip_prefix("--output=")) {
                to = Some(v.to_string());
            } else if let Some(v) = a.strip_prefix("-o").filter(|v| !v.is_empty() && !a.starts_with("--")) {
                to = Some(v.to_string());
            }
        }
        Place::for_data(streams, to.as_deref().map(std::path::Path::new))
    }
}

/// `--json` is among the arguments (before a `--`): usage errors are then
/// reported as JSON too, before clap has said what the flags are.
fn requested(args: &[OsString]) -> bool {
    args.iter().skip(1).take_while(|a| *a != "--").any(|a| a == "--json")
}

/// [`common::parse_args`], with a usage error as a JSON object when `--json` was given.
pub fn parse_args<T: Parser>(prog: &str, args: Vec<OsString>, streams: bool) -> T {
    if !requested(&args) {
        return common::parse_args(prog, args);
    }
    let place = Place::for_args(streams, &args);
    common::parse_args_reporting(prog, args, &|message| {
        // Exit 2 follows whether or not the object could be written.
        let _ =
            print(&Failed { tool: prog.into(), version: VERSION.into(), exit: 2, error: Some(message.into()) }, place);
    })
}

/// [`common::main_with`] for a body that fills a report. Without `json`,
/// exactly that. With it, the report (or a [`Failed`] object when there is
/// none) is printed at `place` with the run's exit status and error.
pub fn main_with<R: Outcome>(
    prog: &str,
    json: bool,
    place: Place,
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
    let printed = match report {
        Some(mut r) => {
            r.set_outcome(exit, error);
            print(&r, place)
        }
        None => print(&Failed { tool: prog.into(), version: VERSION.into(), exit, error }, place),
    };
    // A report that could not be written is a failure of the run.
    match (exit, printed) {
        (0, Err(e)) => {
            common::say(&format!("{prog}: write: standard output: {}", wmbackup::stop::io_cause(&e)));
            ExitCode::from(1)
        }
        _ => ExitCode::from(exit),
    }
}

/// The tool's name and version, for a report.
pub fn version() -> String {
    VERSION.to_string()
}

/// One compact line at `place`.
fn print(report: &impl Outcome, place: Place) -> io::Result<()> {
    // Strings, integers and one finite float: nothing here fails to serialise.
    let text =
        serde_json::to_string(report).unwrap_or_else(|_| r#"{"exit":1,"error":"report not serialisable"}"#.into());
    match place {
        Place::Stderr => {
            common::say(&text);
            Ok(())
        }
        Place::Stdout => {
            let mut out = io::stdout().lock();
            writeln!(out, "{text}").and_then(|()| out.flush())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        std::iter::once("prog").chain(a.iter().copied()).map(OsString::from).collect()
    }

    #[test]
    fn the_report_goes_to_stderr_only_when_the_data_goes_to_stdout() {
        assert_eq!(Place::for_args(true, &args(&["--json"])), Place::Stderr);
        assert_eq!(Place::for_args(true, &args(&["--json", "--to", "-"])), Place::Stderr);
        for to in [&["--to", "x.age"][..], &["-o", "x.age"], &["--output=d/"], &["-ox.age"], &["-to", "x"]] {
            let mut a = vec!["--json"];
            a.extend(to);
            assert_eq!(Place::for_args(true, &args(&a)), Place::Stdout, "{to:?}");
        }
        assert_eq!(Place::for_args(false, &args(&["--json"])), Place::Stdout);
    }
}
