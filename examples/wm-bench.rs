//! `make bench`: our tools against the two-step a user would otherwise write
//! (`sqlite3 … VACUUM INTO` + `age`; for wm-verify, `age -d` + `sqlite3 … PRAGMA
//! integrity_check`), measured side by side, interleaved,
//! several runs each (7 by default), on workmem-shaped databases of about 10 MiB, 100 MiB
//! and 1 GiB (cached in TARGET/bench/db). Prints a table and the ratios the
//! performance issue sets targets for; writes them as JSON to TARGET/bench/,
//! and as Markdown, headed by the run's date, machine and commit, to
//! TARGET/bench/latest.md (what the README's Performance section quotes).
//! Exits 1 when a target is missed (cases P and H, and each size target at
//! the biggest size of the run), naming it.
//!
//! Per run: wall time, CPU time and peak RSS (wait4's rusage, which includes
//! reaped children; the peak taken by a small launcher, see `measure_child`),
//! and bytes written to storage (/proc/PID/io write_bytes
//! minus cancelled_write_bytes, read while the process is a zombie so that its
//! reaped children are included; Linux only, 0 elsewhere).
//!
//! Environment: WM_BENCH_RUNS (default 7), WM_BENCH_SIZES (MiB, default
//! "10,100,1024"; empty for none), WM_BENCH_ONLY (comma-separated prefixes of
//! the case names to run, e.g. "A,D"; default all), WM_BENCH_DIR (default
//! TARGET/bench), WM_BENCH_BIN (the binaries, default TARGET/release). TARGET
//! is CARGO_TARGET_DIR, else `target`: where cargo builds, as the Makefile
//! assumes too.
//!
//! Before the sizes, case P: wm-prune deciding 10,000 synthetic backup
//! names (issue: under 100 ms), on standard input and in a directory, with
//! and without --delete (see `prune_bench`); and case H: wm-verify refusing
//! the worst age headers within the 1 MiB limit (issue: under 1 s each; see
//! `hostile_bench`).

#[path = "../tests/it/fixture.rs"]
mod fixture;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A ratio's name, value, and target (comparison, bound) if the issue sets one.
type Ratio = (String, f64, Option<(&'static str, f64)>);

struct Sample {
    wall: Duration,
    cpu: Duration,
    maxrss_kib: u64,
    written: u64,
}

#[derive(Default)]
struct Stats {
    walls: Vec<f64>,
    cpus: Vec<f64>,
    rss: Vec<u64>,
    written: Vec<u64>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        return f64::NAN;
    }
    if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    }
}

fn median_u(v: &[u64]) -> u64 {
    median(&v.iter().map(|&x| x as f64).collect::<Vec<_>>()) as u64
}

impl Stats {
    fn push(&mut self, s: &Sample) {
        self.walls.push(s.wall.as_secs_f64());
        self.cpus.push(s.cpu.as_secs_f64());
        self.rss.push(s.maxrss_kib);
        self.written.push(s.written);
    }
    fn med(&self) -> f64 {
        median(&self.walls)
    }
    fn min(&self) -> f64 {
        self.walls.iter().cloned().fold(f64::INFINITY, f64::min)
    }
    fn max(&self) -> f64 {
        self.walls.iter().cloned().fold(0.0, f64::max)
    }
}

/// Runs `sh -c script` (bash, for pipefail) and measures it.
fn measure(script: &str, out: &Path) -> Result<Sample, String> {
    // Every case starts from the same state: no earlier output to replace
    // (deleting a 1 GiB file costs its own time, with ext4's online discard
    // especially), and nothing an earlier run left dirty to flush on this
    // run's time.
    if let Ok(entries) = std::fs::read_dir(out) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".age") || name == "e.db" || name.starts_with("restore") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let _ = Command::new("sync").status();
    // Not in `out`: case P measures what is in its directory.
    let rss_file = std::env::temp_dir().join(format!("wm-bench-maxrss-{}.txt", std::process::id()));
    let _ = std::fs::remove_file(&rss_file);
    let start = Instant::now();
    let exe = std::env::current_exe().map_err(|e| format!("the benchmark's own path: {e}"))?;
    let child = Command::new(exe)
        .arg(MEASURE_CHILD)
        .arg(&rss_file)
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn the measuring launcher: {e}"))?;
    let pid = child.id() as i32;
    let mut stderr = child.stderr.expect("piped");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let exited = exit_and_bytes_written(pid, start)?;
    let (status, ru) = reap(pid);
    let (wall, written) = exited.unwrap_or_else(|| (start.elapsed(), 0));
    let err = err_reader.join().unwrap_or_default();
    if !(nix::libc::WIFEXITED(status) && nix::libc::WEXITSTATUS(status) == 0) {
        return Err(format!("{script}: failed: {err}"));
    }
    let tv = |t: nix::libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let maxrss_kib = std::fs::read_to_string(&rss_file)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| format!("{script}: the launcher left no peak RSS in {}", rss_file.display()))?;
    let _ = std::fs::remove_file(&rss_file);
    Ok(Sample { wall, cpu: tv(ru.ru_utime) + tv(ru.ru_stime), maxrss_kib, written })
}

/// [`measure`], or the benchmark ends: a case that fails measures nothing.
fn measured(script: &str, out: &Path) -> Sample {
    measure(script, out).unwrap_or_else(|e| {
        eprintln!("\nwm-bench: {e}");
        std::process::exit(1);
    })
}

/// 0..n in a fresh order for each `seed`, so that no case always follows
/// the same one (a case after a big writer or allocator pays for it).
fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = fixture::Rng::new(seed);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    order
}

/// The argument that makes this program the launcher of one measured run.
const MEASURE_CHILD: &str = "--measure-child";

/// Waits for `pid` and returns its wait status and rusage (its own and its
/// reaped descendants').
fn reap(pid: i32) -> (i32, nix::libc::rusage) {
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter for wait4.
    let mut ru: nix::libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: reaping our own child with valid out-pointers.
    unsafe { nix::libc::wait4(pid, &mut status, 0, &mut ru) };
    (status, ru)
}

/// The launcher: runs `bash -o pipefail -c SCRIPT`, writes the peak RSS of
/// that process tree (KiB) to RSS_FILE, and exits as bash did. A child's
/// ru_maxrss starts from its parent's resident size at the fork (exec keeps
/// the high-water mark), so a run started by the benchmark itself would
/// count the benchmark's own memory; started by this freshly executed,
/// small process, it counts only the shell and what it runs.
fn measure_child(rss_file: &Path, script: &str) -> ! {
    let child = match Command::new("bash").args(["-o", "pipefail", "-c", script]).spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wm-bench: spawn bash: {e}");
            std::process::exit(1);
        }
    };
    let (status, ru) = reap(child.id() as i32);
    // ru_maxrss is in KiB, but in bytes on Apple systems.
    let kib = if cfg!(target_vendor = "apple") { ru.ru_maxrss as u64 / 1024 } else { ru.ru_maxrss as u64 };
    if let Err(e) = std::fs::write(rss_file, format!("{kib}\n")) {
        eprintln!("wm-bench: {}: {e}", rss_file.display());
        std::process::exit(1);
    }
    let code = if nix::libc::WIFEXITED(status) { nix::libc::WEXITSTATUS(status) } else { 1 };
    std::process::exit(code)
}

/// Linux: waits for the exit without reaping, while /proc/PID/io is still
/// there, and returns the wall time and the bytes the process tree wrote.
#[cfg(target_os = "linux")]
fn exit_and_bytes_written(pid: i32, start: Instant) -> Result<Option<(Duration, u64)>, String> {
    use nix::sys::wait::{waitid, Id, WaitPidFlag};
    waitid(Id::Pid(nix::unistd::Pid::from_raw(pid)), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)
        .map_err(|e| format!("waitid: {e}"))?;
    let wall = start.elapsed();
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let field = |name: &str| {
        io.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().parse::<u64>().unwrap_or(0))).unwrap_or(0)
    };
    Ok(Some((wall, field("write_bytes:").saturating_sub(field("cancelled_write_bytes:")))))
}

/// Elsewhere there is no /proc: the wall time is taken when the child is
/// reaped, and the bytes written are not measured.
#[cfg(not(target_os = "linux"))]
fn exit_and_bytes_written(_pid: i32, _start: Instant) -> Result<Option<(Duration, u64)>, String> {
    Ok(None)
}

fn sh(cmd: &str) {
    let ok = Command::new("bash").args(["-c", cmd]).status().map(|s| s.success()).unwrap_or(false);
    if !ok {
        eprintln!("wm-bench: setup failed: {cmd}");
        std::process::exit(1);
    }
}

fn q(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// A case is run when WM_BENCH_ONLY is unset or one of its prefixes starts its name.
fn selected(name: &str) -> bool {
    match std::env::var("WM_BENCH_ONLY") {
        Ok(only) if !only.trim().is_empty() => only.split(',').any(|p| name.starts_with(p.trim())),
        _ => true,
    }
}

const PRUNE_NAMES: usize = 10_000;
const PRUNE_RULES: &str = "--keep-daily 7 --keep-weekly 4 --keep-monthly 12 --keep-yearly 3";

/// Case P: wm-prune over 10,000 names (hourly backups over 14 months),
/// `runs` interleaved runs each after a warm-up. The deleting cases get
/// their directory refilled (unmeasured) before every run: the steady state
/// of a nightly prune (10,000 backups, the oldest dropped), and a first prune
/// that deletes almost all of them, beside `find -delete` of the same
/// directory, the floor of unlinking 10,000 files. Returns the Markdown
/// report, the JSON member, and the cases over their 100 ms.
fn prune_bench(bin: &Path, root: &Path, runs: usize) -> (String, String, Vec<String>) {
    let dir = root.join("prune");
    let _ = std::fs::remove_dir_all(&dir);
    for sub in ["ls", "one", "del", "floor"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let start = 1_760_000_000i64;
    let names: Vec<String> = (0..PRUNE_NAMES as i64)
        .map(|i| wmbackup::prune::name("memory", &wmbackup::clock::Utc::from_unix(start + i * 3600), "db.age"))
        .collect();
    std::fs::write(dir.join("names.txt"), names.join("\n") + "\n").unwrap();
    let fill = |sub: &str| {
        for n in &names {
            let p = dir.join(sub).join(n);
            if !p.exists() {
                std::fs::File::create(p).unwrap();
            }
        }
    };
    fill("ls");
    let b = bin.display();
    let d = |sub: &str| q(&dir.join(sub));
    let last = PRUNE_NAMES - 1;
    // (name, script, held to the 100 ms)
    let cases: Vec<(&str, String, bool)> = vec![
        (
            "P wm-prune - (names on stdin)",
            format!("{b}/wm-prune {PRUNE_RULES} - < {} > /dev/null", d("names.txt")),
            true,
        ),
        ("P wm-prune DIR (list only)", format!("{b}/wm-prune {PRUNE_RULES} {} > /dev/null", d("ls")), true),
        (
            "P wm-prune DIR --delete (the oldest)",
            format!("{b}/wm-prune --keep-last {last} --delete {} > /dev/null", d("one")),
            true,
        ),
        (
            "P wm-prune DIR --delete (9976 files)",
            format!("{b}/wm-prune {PRUNE_RULES} --delete {} > /dev/null", d("del")),
            false,
        ),
        ("P find DIR -delete (10000 files)", format!("find {} -type f -delete", d("floor")), false),
    ];
    let cases: Vec<(&str, String, bool)> = cases.into_iter().filter(|(n, _, _)| selected(n)).collect();
    let mut stats: BTreeMap<&str, Stats> = BTreeMap::new();
    for round in 0..=runs {
        for ci in shuffled(cases.len(), 500 + round as u64) {
            let (name, script, _) = &cases[ci];
            for sub in ["one", "del", "floor"] {
                fill(sub);
            }
            eprint!("\r\x1b[2Kprune, run {round}/{runs}: {name}");
            let s = measured(script, &dir);
            // Round 0 is the warm-up.
            if round > 0 {
                stats.entry(name).or_default().push(&s);
            }
        }
    }
    eprint!("\r\x1b[2K");
    let mut report = format!(
        "\n## P: wm-prune over {PRUNE_NAMES} names ({PRUNE_RULES}; process start included)\n\n| case | min ms | median ms | max ms | target |\n|---|---|---|---|---|\n"
    );
    let mut json = String::from("  \"prune\": {");
    let mut over = Vec::new();
    for (i, (name, _, held)) in cases.iter().enumerate() {
        let s = &stats[name];
        let met = match (held, s.med() < 0.1) {
            (false, _) => "",
            (true, true) => "< 100 ms met",
            (true, false) => {
                over.push(format!("{name}: {:.1} ms (target < 100 ms)", s.med() * 1e3));
                "< 100 ms MISSED"
            }
        };
        let _ =
            writeln!(report, "| {name} | {:.1} | {:.1} | {:.1} | {met} |", s.min() * 1e3, s.med() * 1e3, s.max() * 1e3);
        let _ = write!(
            json,
            "{}\n    \"{name}\": {{\"median_s\": {:.5}, \"max_s\": {:.5}}}",
            if i == 0 { "" } else { "," },
            s.med(),
            s.max()
        );
    }
    json.push_str("\n  },\n");
    let m = |n: &str| stats.get(n).map(|s| s.med()).unwrap_or(f64::NAN);
    let _ = writeln!(
        report,
        "\nwm-prune --delete of 9976 files / find -delete of 10000: {:.2} (wm-prune also lists, decides and fsyncs the directory)",
        m("P wm-prune DIR --delete (9976 files)") / m("P find DIR -delete (10000 files)")
    );
    let _ = std::fs::remove_dir_all(&dir);
    (report, json, over)
}

/// The argument that makes this program one pass of case Z.
const ZEROING_PASS: &str = "--zeroing-pass";

/// Case Z: what the page stream's zeroing costs, alone. Reads the database
/// file's pages in order (1 MiB reads) and copies each into a 1 MiB buffer
/// (as the stream copies into the encrypter's), through the scrubber's plan
/// with `on`, verbatim without: the difference of the two is the zeroing.
fn zeroing_pass(db: &Path, on: bool) -> ! {
    use std::os::unix::fs::FileExt;
    use wmbackup::sqlite::snapshot::scrub::{write_scrubbed, Scrubber};
    let fail = |e: String| -> ! {
        eprintln!("wm-bench: zeroing pass: {}: {e}", db.display());
        std::process::exit(1)
    };
    let f = std::fs::File::open(db).unwrap_or_else(|e| fail(e.to_string()));
    let mut head = [0u8; 100];
    f.read_exact_at(&mut head, 0).unwrap_or_else(|e| fail(e.to_string()));
    let h = wmbackup::sqlite::header::DbHeader::parse(&head).unwrap_or_else(|e| fail(e.to_string()));
    let ps = h.page_size as usize;
    let pages = f.metadata().unwrap_or_else(|e| fail(e.to_string())).len() / ps as u64;
    let mut page1 = vec![0u8; ps];
    f.read_exact_at(&mut page1, 0).unwrap_or_else(|e| fail(e.to_string()));
    let read = |p: u32| -> std::io::Result<Vec<u8>> {
        let mut b = vec![0u8; ps];
        f.read_exact_at(&mut b, (p as u64 - 1) * ps as u64)?;
        Ok(b)
    };
    let mut scrub = Scrubber::new(&page1, pages, read).unwrap_or_else(|e| fail(e.to_string()));
    let mut chunk = vec![0u8; 1 << 20];
    let mut sink: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut pgno: u64 = 1;
    let mut zeroed = 0u64;
    while pgno <= pages {
        let n = ((pages - pgno + 1) as usize * ps).min(chunk.len());
        f.read_exact_at(&mut chunk[..n], (pgno - 1) * ps as u64).unwrap_or_else(|e| fail(e.to_string()));
        for page in chunk[..n].chunks(ps) {
            if sink.len() + ps > sink.capacity() {
                sink.clear();
            }
            let ranges = if on { scrub.plan(pgno as u32, page) } else { &[] };
            zeroed += ranges.iter().map(|(a, b)| (b - a) as u64).sum::<u64>();
            write_scrubbed(&mut sink, page, ranges).unwrap_or_else(|e| fail(e.to_string()));
            pgno += 1;
        }
    }
    std::hint::black_box((&sink, zeroed));
    std::process::exit(0)
}

/// Case H: wm-verify refusing each of the worst age headers a hostile file
/// can hold within the 1 MiB limit (lib/src/age/hostile.rs), with an X25519
/// and a post-quantum identity (every X25519 or ML-KEM stanza costs one key
/// agreement); the bound is 1 s each, process start included.
/// Returns the Markdown report, the JSON member, and the shapes over 1 s.
fn hostile_bench(bin: &Path, root: &Path, runs: usize, ids: &[&Path]) -> (String, String, Vec<String>) {
    let dir = root.join("hostile");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ids: String = ids.iter().map(|p| format!(" -i {}", q(p))).collect();
    let mut cases: Vec<(String, String)> = Vec::new();
    for (i, shape) in wmbackup::age::hostile::shapes().into_iter().enumerate() {
        let name = format!("H wm-verify: {}", shape.name);
        if !selected(&name) {
            continue;
        }
        let file = dir.join(format!("{i}.hostile"));
        std::fs::write(&file, &shape.file).unwrap();
        // Refused with exit 1, and nothing else, or the case fails.
        cases.push((name, format!("{}/wm-verify -q{ids} {}; [ $? -eq 1 ]", bin.display(), q(&file))));
    }
    let mut stats: BTreeMap<&str, Stats> = BTreeMap::new();
    for round in 0..=runs {
        for (name, script) in &cases {
            eprint!("\r\x1b[2Khostile headers, run {round}/{runs}: {name}");
            let s = measured(script, &dir);
            if round > 0 {
                stats.entry(name).or_default().push(&s);
            }
        }
    }
    eprint!("\r\x1b[2K");
    let mut report = String::from(
        "\n## H: wm-verify refusing the worst 1 MiB age headers (X25519 + post-quantum identities; process start included)\n\n| case | min ms | median ms | max ms | target |\n|---|---|---|---|---|\n",
    );
    let mut json = String::from("  \"hostile_headers\": {");
    let mut over = Vec::new();
    for (i, (name, _)) in cases.iter().enumerate() {
        let s = &stats[name.as_str()];
        let met = if s.max() < 1.0 { "< 1 s met" } else { "< 1 s MISSED" };
        if s.max() >= 1.0 {
            over.push(format!("{name}: {:.2} s (target < 1 s)", s.max()));
        }
        let _ =
            writeln!(report, "| {name} | {:.1} | {:.1} | {:.1} | {met} |", s.min() * 1e3, s.med() * 1e3, s.max() * 1e3);
        let _ = write!(
            json,
            "{}\n    \"{name}\": {{\"median_s\": {:.5}, \"max_s\": {:.5}}}",
            if i == 0 { "" } else { "," },
            s.med(),
            s.max()
        );
    }
    json.push_str("\n  },\n");
    let _ = std::fs::remove_dir_all(&dir);
    (report, json, over)
}

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() == 4 && args[1] == MEASURE_CHILD {
        measure_child(Path::new(&args[2]), &args[3].to_string_lossy());
    }
    if args.len() == 4 && args[1] == ZEROING_PASS {
        zeroing_pass(Path::new(&args[2]), args[3] == "on");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    let root = std::env::var_os("WM_BENCH_DIR").map_or_else(|| target.join("bench"), PathBuf::from);
    let runs: usize = std::env::var("WM_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(7);
    let sizes: Vec<u64> = std::env::var("WM_BENCH_SIZES")
        .unwrap_or_else(|_| "10,100,1024".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let bin = std::env::var_os("WM_BENCH_BIN").map_or_else(|| target.join("release"), PathBuf::from);
    for tool in ["sqlite3", "age", "age-keygen"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            eprintln!("wm-bench: {tool} is needed (apt-get install sqlite3 age)");
            std::process::exit(1);
        }
    }
    let dbdir = root.join("db");
    let out = root.join("out");
    std::fs::create_dir_all(&dbdir).unwrap();
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let keys = root.join("keys.txt");
    let identity = root.join("identity.txt");
    if !keys.exists() {
        sh(&format!("age-keygen -o {} 2>/dev/null && age-keygen -y {} > {}", q(&identity), q(&identity), q(&keys)));
    }
    let recipient = std::fs::read_to_string(&keys).unwrap().trim().to_string();
    // A post-quantum key (ML-KEM-768 + X25519) beside the X25519 one.
    let pq_identity = root.join("identity-pq.txt");
    let pq_keys = root.join("keys-pq.txt");
    if !pq_keys.exists() {
        use age::secrecy::ExposeSecret;
        let id = wmbackup::age::pq::HybridIdentity::generate();
        std::fs::write(&pq_identity, format!("{}\n", id.to_string().expose_secret())).unwrap();
        std::fs::write(&pq_keys, format!("{}\n", id.to_public())).unwrap();
    }
    let machine = describe_machine();
    println!("wm-bench: {runs} interleaved runs per case; {machine}");
    let started = utc_now();
    // The targets are set for the biggest database (1 GiB by default), where
    // process start-up no longer dominates; smaller sizes are for information.
    let judged_at = sizes.iter().copied().max().unwrap_or(0);
    let mut missed: Vec<String> = Vec::new();

    let mut json = String::from("{\n");
    let _ = writeln!(json, "  \"machine\": \"{}\",\n  \"runs\": {runs},", machine.replace('"', "'"));
    let (mut report, prune_json, prune_over) = prune_bench(&bin, &root, runs);
    json.push_str(&prune_json);
    missed.extend(prune_over);
    let (hostile_md, hostile_json, over) = hostile_bench(&bin, &root, runs, &[&identity, &pq_identity]);
    report.push_str(&hostile_md);
    json.push_str(&hostile_json);
    missed.extend(over);
    json.push_str("  \"sizes\": {\n");
    for (si, &mib) in sizes.iter().enumerate() {
        let db = dbdir.join(format!("workmem-{mib}MiB.db"));
        if !db.exists() {
            eprintln!("wm-bench: generating {} (cached for later runs)…", db.display());
            let tmp = dbdir.join(format!(".gen-{mib}.db"));
            let _ = std::fs::remove_file(&tmp);
            fixture::create(&tmp, mib << 20, true, 42).expect("generate fixture");
            std::fs::rename(&tmp, &db).unwrap();
        }
        let db_bytes = std::fs::metadata(&db).unwrap().len();
        let snapshot = out.join("snapshot.db");
        sh(&format!("{}/wm-snapshot --db {} --to {}", bin.display(), q(&db), q(&snapshot)));
        let raw = out.join("raw.bin");
        let with_d = mib >= 1024;
        if with_d {
            sh(&format!("head -c 1073741824 {} > {}", q(&db), q(&raw)));
        }
        // wm-verify's input: one backup made once, named so that measure() keeps it.
        let vin = out.join("verify.in");
        sh(&format!("{}/workmem-backup -q --db {} --to {} -R {}", bin.display(), q(&db), q(&vin), q(&keys)));
        let (b, o, k, r) = (bin.display().to_string(), out.clone(), q(&keys), recipient.clone());
        let kpq = q(&pq_keys);
        let (id, vq) = (q(&identity), q(&vin));
        let dbq = q(&db);
        let oq = |n: &str| q(&o.join(n));
        let mut cases: Vec<(&str, String)> = vec![
            ("A vacuum auto", format!("{b}/workmem-backup -q --db {dbq} --to {} --age-recipient {r}", oq("a.age"))),
            ("A vacuum memory", format!("{b}/workmem-backup -q --db {dbq} --to {} --age-recipient {r} --spool memory", oq("a.age"))),
            ("A vacuum disk", format!("{b}/workmem-backup -q --db {dbq} --to {} --age-recipient {r} --spool disk", oq("a.age"))),
            ("A pages", format!("{b}/workmem-backup -q --db {dbq} --to {} --age-recipient {r} --method pages", oq("a.age"))),
            ("A pages PQ", format!("{b}/workmem-backup -q --db {dbq} --to {} -R {kpq} --method pages", oq("a.age"))),
            ("A vacuum auto PQ", format!("{b}/workmem-backup -q --db {dbq} --to {} -R {kpq}", oq("a.age"))),
            ("B pipeline", format!("{b}/wm-snapshot --db {dbq} | {b}/wm-seal -q --to {} -r {r}", oq("b.age"))),
            ("B pipeline pages", format!("{b}/wm-snapshot --db {dbq} --method pages | {b}/wm-seal -q --to {} -r {r}", oq("b.age"))),
            (
                "C two-step",
                format!(
                    "t=$(mktemp -u /tmp/wmbench.XXXXXX.db) && sqlite3 {dbq} \"VACUUM INTO '$t'\" && age -R {k} -o {} \"$t\" && sync {} {} && rm \"$t\"",
                    oq("c.age"), oq("c.age"), q(&o)
                ),
            ),
            ("E snapshot vacuum", format!("{b}/wm-snapshot --db {dbq} > /dev/null")),
            ("E snapshot pages", format!("{b}/wm-snapshot --db {dbq} --method pages > /dev/null")),
            ("E sqlite3 tmpfs", format!("sqlite3 {dbq} \"VACUUM INTO '/dev/shm/wmbench.db'\" && rm /dev/shm/wmbench.db")),
            ("E sqlite3 disk", format!("sqlite3 {dbq} \"VACUUM INTO '{}'\" && rm {}", o.join("e.db").display(), oq("e.db"))),
            ("F floor", format!("age -R {k} -o {} {} && sync {} {}", oq("f.age"), q(&snapshot), oq("f.age"), q(&o))),
            ("V wm-verify", format!("{b}/wm-verify -q -i {id} {vq}")),
            ("R wm-restore", format!("{b}/wm-restore -q -i {id} --db {} {vq}", oq("restore.db"))),
            (
                "R age -d + sync + sqlite3",
                format!(
                    "age -d -i {id} -o {} {vq} && sync {} {} && test \"$(sqlite3 {} 'PRAGMA integrity_check')\" = ok",
                    oq("restore2.db"),
                    oq("restore2.db"),
                    q(&o),
                    oq("restore2.db")
                ),
            ),
            ("V wm-verify disk", format!("{b}/wm-verify -q -i {id} --spool disk {vq}")),
            // What bounds the V cases: decryption alone, and the check alone
            // (one core, as sqlite3 runs it).
            ("V age -d >null", format!("age -d -i {id} -o /dev/null {vq}")),
            (
                "V sqlite3 integrity_check",
                format!("test \"$(sqlite3 {} 'PRAGMA integrity_check')\" = ok", q(&snapshot)),
            ),
            (
                "V age -d + sqlite3 tmpfs",
                format!(
                    "t=$(mktemp -u /dev/shm/wmbench.XXXXXX.db) && age -d -i {id} -o \"$t\" {vq} && test \"$(sqlite3 \"$t\" 'PRAGMA integrity_check')\" = ok && rm \"$t\""
                ),
            ),
            (
                "V age -d + sqlite3 disk",
                format!(
                    "t=$(mktemp -u {}/wmbench.XXXXXX.db) && age -d -i {id} -o \"$t\" {vq} && test \"$(sqlite3 \"$t\" 'PRAGMA integrity_check')\" = ok && rm \"$t\"",
                    o.display()
                ),
            ),
        ];
        if with_d {
            let rq = q(&raw);
            cases.push(("D wm-seal >null", format!("{b}/wm-seal --raw -R {k} < {rq} > /dev/null")));
            cases.push(("D age >null", format!("age -R {k} < {rq} > /dev/null")));
            cases.push(("D wm-seal --to", format!("{b}/wm-seal --raw -R {k} --to {} < {rq}", oq("d.age"))));
            cases.push(("D wm-seal --to PQ", format!("{b}/wm-seal --raw -R {kpq} --to {} < {rq}", oq("d.age"))));
            cases.push((
                "D age -o +fsync",
                format!("age -R {k} -o {} < {rq} && sync {} {}", oq("d2.age"), oq("d2.age"), q(&o)),
            ));
        }
        // What --json costs: the SHA-256 of the ciphertext on the hot path.
        cases.push((
            "A vacuum auto --json",
            format!("{b}/workmem-backup -q --db {dbq} --to {} --age-recipient {r} --json 2>/dev/null", oq("a.age")),
        ));
        cases.push((
            "A pages --json",
            format!(
                "{b}/workmem-backup -q --db {dbq} --to {} --age-recipient {r} --method pages --json 2>/dev/null",
                oq("a.age")
            ),
        ));
        // Case Z: the page stream's zeroing alone (see `zeroing_pass`).
        let me = std::env::current_exe().map(|p| q(&p)).unwrap_or_default();
        cases.push(("Z pages read", format!("{me} {ZEROING_PASS} {dbq} off")));
        cases.push(("Z pages read + zeroing", format!("{me} {ZEROING_PASS} {dbq} on")));
        cases.retain(|(name, _)| selected(name));
        // Setup (and a first generation of the database) leaves dirty pages
        // and discards behind: flush them, then one unrecorded warm-up round.
        sh("sync");
        for (name, script) in &cases {
            eprint!("\r\x1b[2K{mib} MiB, warm-up: {name}");
            measured(script, &o);
        }
        let mut stats: BTreeMap<&str, Stats> = BTreeMap::new();
        for run in 0..runs {
            for ci in shuffled(cases.len(), 1000 + run as u64) {
                let (name, script) = &cases[ci];
                eprint!("\r\x1b[2K{mib} MiB, run {}/{runs}: {name}", run + 1);
                stats.entry(name).or_default().push(&measured(script, &o));
            }
        }
        eprint!("\r\x1b[2K");
        // The ciphertext size, from one more (unmeasured) default backup.
        sh(&format!("{b}/workmem-backup -q --db {dbq} --to {} --age-recipient {r}", oq("a.age")));
        let cipher = std::fs::metadata(o.join("a.age")).map(|m| m.len()).unwrap_or(0);
        let snap_bytes = std::fs::metadata(&snapshot).map(|m| m.len()).unwrap_or(0);
        let _ = writeln!(
            report,
            "\n## {mib} MiB target: database {} bytes, snapshot {snap_bytes}, ciphertext {cipher}\n",
            db_bytes
        );
        let _ =
            writeln!(report, "| case | min s | median s | max s | CPU s | peak RSS MiB | written MiB | s per GiB |");
        let _ = writeln!(report, "|---|---|---|---|---|---|---|---|");
        let gib = db_bytes as f64 / (1u64 << 30) as f64;
        let _ = writeln!(json, "    \"{mib}\": {{\n      \"db_bytes\": {db_bytes},\n      \"ciphertext_bytes\": {cipher},\n      \"cases\": {{");
        let n = cases.len();
        for (i, (name, _)) in cases.iter().enumerate() {
            let s = &stats[name];
            let _ = writeln!(
                report,
                "| {name} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1} | {:.1} | {:.2} |",
                s.min(),
                s.med(),
                s.max(),
                median(&s.cpus),
                median_u(&s.rss) as f64 / 1024.0,
                median_u(&s.written) as f64 / (1u64 << 20) as f64,
                s.med() / gib
            );
            let _ = writeln!(
                json,
                "        \"{name}\": {{\"wall_s\": [{}], \"median_s\": {:.4}, \"cpu_s\": {:.4}, \"maxrss_kib\": {}, \"written_bytes\": {}}}{}",
                s.walls.iter().map(|w| format!("{w:.4}")).collect::<Vec<_>>().join(", "),
                s.med(),
                median(&s.cpus),
                median_u(&s.rss),
                median_u(&s.written),
                if i + 1 < n { "," } else { "" }
            );
        }
        let _ = write!(json, "      }},\n      \"ratios\": {{");
        let m = |n: &str| stats.get(n).map(|s| s.med()).unwrap_or(f64::NAN);
        let mut ratios: Vec<Ratio> = vec![
            ("A pages / C".into(), m("A pages") / m("C two-step"), Some(("<=", 0.45))),
            // Issue 7 set 0.7; issue 25 asks 0.6 at 1 GiB.
            ("A vacuum auto / C".into(), m("A vacuum auto") / m("C two-step"), Some(("<=", 0.60))),
            // What bounds it: VACUUM INTO must finish before the image can be
            // encrypted and written (A pages does that part from the file).
            (
                "(E snapshot vacuum + A pages) / C, the serial floor of A vacuum".into(),
                (m("E snapshot vacuum") + m("A pages")) / m("C two-step"),
                None,
            ),
            ("A pages / F floor".into(), m("A pages") / m("F floor"), Some(("<=", 1.15))),
            ("B / A (vacuum)".into(), m("B pipeline") / m("A vacuum auto"), Some(("<=", 1.15))),
            // The B is the default method; this one is for information.
            ("B / A (pages)".into(), m("B pipeline pages") / m("A pages"), None),
            // For information: the digest --json adds.
            ("A vacuum auto --json / A vacuum auto".into(), m("A vacuum auto --json") / m("A vacuum auto"), None),
            ("A pages --json / A pages".into(), m("A pages --json") / m("A pages"), None),
            ("E vacuum / sqlite3 tmpfs".into(), m("E snapshot vacuum") / m("E sqlite3 tmpfs"), None),
            ("E pages / sqlite3 tmpfs".into(), m("E snapshot pages") / m("E sqlite3 tmpfs"), None),
            ("E vacuum / sqlite3 disk".into(), m("E snapshot vacuum") / m("E sqlite3 disk"), None),
            // Issue 25: verify on both cores, against the restore-and-check a user would script.
            (
                "V wm-verify / age -d + sqlite3 tmpfs".into(),
                m("V wm-verify") / m("V age -d + sqlite3 tmpfs"),
                Some(("<=", 0.8)),
            ),
            (
                "V wm-verify disk / age -d + sqlite3 disk".into(),
                m("V wm-verify disk") / m("V age -d + sqlite3 disk"),
                None,
            ),
            // Issue 14: the safe restore against the unsafe manual way.
            (
                "R wm-restore / age -d + sync + sqlite3".into(),
                m("R wm-restore") / m("R age -d + sync + sqlite3"),
                // Issue 14 set 1.2; issue 25, with the check on both cores, 0.9.
                Some(("<=", 0.9)),
            ),
            // Issue 13: one encapsulation per file adds nothing measurable.
            ("A pages PQ / A pages".into(), m("A pages PQ") / m("A pages"), None),
            // Issue 25: zeroing dead space costs at most 5% of a pages backup.
            (
                "Z zeroing / A pages".into(),
                (m("Z pages read + zeroing") - m("Z pages read")) / m("A pages"),
                Some(("<=", 0.05)),
            ),
            ("A vacuum auto PQ / A vacuum auto".into(), m("A vacuum auto PQ") / m("A vacuum auto"), None),
        ];
        let written = |n: &str| stats.get(n).map(|s| median_u(&s.written) as f64).unwrap_or(f64::NAN);
        ratios.push((
            "A vacuum auto written / ciphertext".into(),
            written("A vacuum auto") / cipher as f64,
            Some(("<=", 1.05)),
        ));
        ratios.push(("A pages written / ciphertext".into(), written("A pages") / cipher as f64, Some(("<=", 1.05))));
        ratios.push(("C written / ciphertext".into(), written("C two-step") / cipher as f64, None));
        if with_d {
            // Throughput ratio ours/age: time of age over time of ours (>= 1.0 is the target).
            ratios.push((
                "D throughput wm-seal/age (null)".into(),
                m("D age >null") / m("D wm-seal >null"),
                Some((">=", 1.0)),
            ));
            ratios.push((
                "D throughput wm-seal/age (file, durable)".into(),
                m("D age -o +fsync") / m("D wm-seal --to"),
                Some((">=", 1.0)),
            ));
            ratios.push(("D wm-seal --to PQ / X25519".into(), m("D wm-seal --to PQ") / m("D wm-seal --to"), None));
            let rss = |n: &str| stats.get(n).map(|s| median_u(&s.rss) as f64 / 1024.0).unwrap_or(f64::NAN);
            ratios.push(("D wm-seal --to PQ peak RSS MiB".into(), rss("D wm-seal --to PQ"), Some(("<=", 16.0))));
        }
        let subset = std::env::var("WM_BENCH_ONLY").is_ok_and(|o| !o.trim().is_empty());
        let _ = writeln!(report, "\n| ratio (medians) | value | target |\n|---|---|---|");
        for (i, (name, v, target)) in ratios.iter().enumerate() {
            let t = match target {
                // A case left out by WM_BENCH_ONLY: nothing to judge.
                Some((op, x)) if v.is_nan() && subset => format!("{op} {x} not run (WM_BENCH_ONLY)"),
                Some((op, x)) => {
                    // NaN (a case that did not run) meets nothing.
                    let ok = if *op == "<=" { *v <= *x } else { *v >= *x };
                    if mib != judged_at {
                        format!("{op} {x} {} (judged at {judged_at} MiB)", if ok { "met" } else { "not met" })
                    } else {
                        if !ok {
                            missed.push(format!("{mib} MiB: {name} = {v:.3}, target {op} {x}"));
                        }
                        format!("{op} {x} {}", if ok { "met" } else { "**MISSED**" })
                    }
                }
                None => String::new(),
            };
            let _ = writeln!(report, "| {name} | {v:.3} | {t} |");
            let _ = write!(json, "{}\n        \"{name}\": {v:.4}", if i == 0 { "" } else { "," });
        }
        let _ = write!(json, "\n      }}\n    }}{}\n", if si + 1 < sizes.len() { "," } else { "" });
        let _ = std::fs::remove_file(&raw);
    }
    json.push_str("  }\n}\n");
    let commit = Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let sizes_s = sizes.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", ");
    let verdict = if missed.is_empty() {
        "every target met".to_string()
    } else {
        format!("{} target(s) MISSED: {}", missed.len(), missed.join("; "))
    };
    let report = format!(
        "# make bench: run of {started}\n\n\
         Machine: {machine}. Commit {commit}. {runs} interleaved runs per case after a warm-up, medians; \
         sizes {sizes_s} MiB, targets judged at {judged_at} MiB. Result: {verdict}.\n{report}"
    );
    println!("{report}");
    let stamp = Command::new("date")
        .arg("+%Y%m%dT%H%M%S")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let path = root.join(format!("results-{stamp}.json"));
    std::fs::write(&path, &json).unwrap();
    std::fs::write(root.join("latest.json"), &json).unwrap();
    std::fs::write(root.join("latest.md"), &report).unwrap();
    let _ = std::fs::remove_dir_all(&out);
    println!("wm-bench: results in {} (and latest.json, latest.md)", path.display());
    if !missed.is_empty() {
        for m in &missed {
            eprintln!("wm-bench: MISSED: {m}");
        }
        std::process::exit(1);
    }
}

/// The time now in UTC, as `date -u` prints it (the run's name in latest.md).
fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn describe_machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse::<u64>().unwrap_or(0) / 1024 / 1024)
        })
        .unwrap_or(0);
    let ver = |c: &str, a: &str| {
        Command::new(c)
            .arg(a)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().next().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    format!(
        "{cores} cores ({cpu}), {mem} GiB RAM, sqlite3 {}, age {}",
        ver("sqlite3", "--version"),
        ver("age", "--version")
    )
}
