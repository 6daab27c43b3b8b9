//! The off-machine recipes in `contrib/remote/`, run as users copy them,
//! against real remotes on loopback: rclone (its local backend and `rclone
//! serve webdav`), the AWS CLI against the S3-protocol server s3rver, and
//! ssh into sshd. For each: a good run commits; a producer killed
//! mid-stream, a truncated input and a full disk on the receiving side
//! leave the remote exactly as it was (the last committed object
//! byte-identical, no new name); what was committed verifies and restores
//! when read back through the same tool. Then ten nights with three
//! failures, pruned over the remote listing.
//!
//! s3rver is found through `WM_S3RVER` (its executable), else in
//! `TARGET/npm/node_modules/.bin/s3rver` (`npm install --no-save --prefix
//! target/npm age-encryption@0.3.1 s3rver@3.7.1`, both in one command); `aws`
//! on PATH. The full-disk cases mount a tmpfs, which needs root (CI has it).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

const RECIPE_RCLONE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/remote/rclone-backup.sh");
const RECIPE_S3: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/remote/s3-backup.sh");
const RECIPE_SSH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/remote/ssh-backup.sh");

/// The first bytes of the snapshot that get through before wm-snapshot is
/// killed, or before the input is cut: well inside the 2.5 MB database,
/// which is larger than the 1 MiB pipe wm-snapshot asks for.
const CUT: usize = 65_536;

/// How the producer behaves in one run.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Producer {
    /// The real wm-snapshot.
    Good,
    /// The real wm-snapshot, killed with SIGKILL after the first CUT bytes
    /// went down the pipe.
    Killed,
    /// The snapshot cut after CUT bytes by a producer that then exits 0: only
    /// wm-seal can tell.
    Truncated,
}

/// A test's world: the database, an age key, and a directory of the tools
/// the recipes find on PATH (the real binaries, and wm-snapshot as the
/// current Producer makes it).
struct World {
    d: Dir,
    db: PathBuf,
    id: PathBuf,
    recipient: String,
    bin: PathBuf,
    envs: Vec<(String, String)>,
}

impl World {
    fn new() -> World {
        let d = Dir::new();
        let db = d.workmem_db("memory.db", 2_500_000, true);
        let (id, recipient) = d.age_key("identity.txt");
        let bin = d.mkdir("bin");
        for (name, real) in
            [("wm-seal", WM_SEAL), ("wm-prune", WM_PRUNE), ("wm-verify", WM_VERIFY), ("wm-restore", WM_RESTORE)]
        {
            std::os::unix::fs::symlink(real, bin.join(name)).unwrap();
        }
        let mut w = World { d, db, id, recipient, bin, envs: Vec::new() };
        w.producer(Producer::Good);
        w
    }

    /// Installs wm-snapshot as `p` makes it.
    fn producer(&mut self, p: Producer) {
        let path = self.bin.join("wm-snapshot");
        let _ = std::fs::remove_file(&path);
        let script = match p {
            Producer::Good => {
                std::os::unix::fs::symlink(WM_SNAPSHOT, &path).unwrap();
                return;
            }
            // The subshell's pid is wm-snapshot's after the exec. The kill must
            // find it still running (its exit status is then 137, which the
            // tests expect), else the shim exits 99.
            Producer::Killed => format!(
                "#!/usr/bin/env bash\nset -o pipefail\n\
                 ( echo \"$BASHPID\" > \"$0.pid\"; exec '{WM_SNAPSHOT}' \"$@\" ) |\n\
                 {{ head -c {CUT}; kill -KILL \"$(cat \"$0.pid\")\" || exit 99; cat; }}\n"
            ),
            Producer::Truncated => {
                format!("#!/bin/sh\n{{ '{WM_SNAPSHOT}' \"$@\" || true; }} | head -c {CUT}\nexit 0\n")
            }
        };
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }

    /// Runs a recipe (or any bash script) with the tools on PATH and the
    /// remote's environment; stderr goes to a file, so a hung run is killed
    /// after a minute instead of blocking on a full pipe.
    fn bash(&self, script: &str, args: &[&str]) -> Out {
        let path = format!("{}:{}", self.bin.display(), std::env::var("PATH").unwrap_or_default());
        let errfile = self.d.join("stderr.txt");
        let outfile = self.d.join("stdout.txt");
        let mut c = Command::new("bash");
        c.arg(script)
            .args(args)
            .current_dir(&self.d.path)
            .env("PATH", path)
            .env("TMPDIR", &self.d.path)
            .env_remove("MEMORY_DB_PATH")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&outfile).unwrap())
            .stderr(std::fs::File::create(&errfile).unwrap());
        for (k, v) in &self.envs {
            c.env(k, v);
        }
        let mut child = c.spawn().expect("run bash");
        let status = wait_timeout(&mut child, Duration::from_secs(60));
        let stderr = std::fs::read_to_string(&errfile).unwrap_or_default();
        let stdout = std::fs::read(&outfile).unwrap_or_default();
        Out { status, stdout, stderr }
    }

    /// One run of `recipe` to `dest` with `extra` options.
    fn backup(&self, recipe: &str, dest: &str, extra: &[&str]) -> Out {
        let mut args = vec!["-r", &self.recipient, "--db", self.db.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push(dest);
        self.bash(recipe, &args)
    }

    /// Runs a bash command line with the world's PATH and environment.
    fn script(&self, line: &str) -> Out {
        let file = self.d.write("script.sh", line);
        self.bash(file.to_str().unwrap(), &[])
    }
}

/// One remote as a recipe sees it, and as the test sees it behind the tool.
struct Remote<'a> {
    recipe: &'a str,
    /// The recipe's destination argument.
    dest: String,
    /// The files behind the remote, on this machine.
    files: PathBuf,
    /// A bash command that prints the remote's names, through the tool.
    list: String,
    /// A bash command that prints the backup named `{}`, through the tool.
    fetch: String,
    /// How the recipe names a failed upload.
    upload: &'a str,
}

impl Remote<'_> {
    fn listing(&self, w: &World) -> Vec<String> {
        let out = w.script(&format!("set -o pipefail; {}", self.list));
        out.ok();
        let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
        v.sort();
        v
    }

    /// A failed run leaves the remote as it was (every file behind it
    /// byte-identical; with `exact`, no new file either, so the tool lists
    /// what it did; else only files of the `.partial` name, and the caller
    /// checks the listing), and says which stage failed and that nothing
    /// was committed.
    #[track_caller]
    fn assert_fails(&self, w: &World, stage: &str, what: &str, exact: bool) {
        let before = tree(&self.files);
        let out = w.backup(self.recipe, &self.dest, &["--name", "memory-20261201T031500Z.db.age"]);
        assert_eq!(out.code(), 1, "{what}: the recipe fails; stderr: {}", out.stderr);
        assert!(out.stderr.contains(stage), "{what}: names the stage ({stage}): {}", out.stderr);
        assert!(out.stderr.contains("nothing committed"), "{what}: says nothing was committed: {}", out.stderr);
        let after = tree(&self.files);
        if exact {
            assert_unchanged(&before, &after, what);
        } else {
            for (k, v) in &before {
                assert_eq!(after.get(k), Some(v), "{what}: {k} is unchanged");
            }
            for k in after.keys().filter(|k| !before.contains_key(*k)) {
                assert!(k.contains(".db.age.partial"), "{what}: only the partial upload is new: {k}");
            }
        }
    }

    /// The tool lists the names in `listed` and perhaps partial uploads,
    /// and wm-prune counts only the names of `listed`; returns the listing.
    #[track_caller]
    fn assert_counted(&self, w: &World, listed: &[&str], what: &str) -> Vec<String> {
        let all = self.listing(w);
        let mut now = all.clone();
        now.retain(|n| !n.ends_with(".partial"));
        assert_eq!(now, listed, "{what}: the tool lists the same names");
        let out = run(WM_PRUNE, &w.d).args(["--json", "--keep-last", "1", "-"]).stdin(all.join("\n")).go();
        out.ok();
        let (v, _) = json_on_stderr(&out);
        assert_eq!(v["backups"], listed.len(), "{what}: wm-prune counts only committed backups: {v}");
        all
    }

    /// wm-verify and wm-restore read the backup `name` through the tool, and
    /// it restores to the source.
    #[track_caller]
    fn assert_reads_back(&self, w: &World, name: &str) {
        let fetch = self.fetch.replace("{}", name);
        let id = w.id.to_str().unwrap();
        let verify = w.script(&format!("set -o pipefail; {fetch} | wm-verify -i '{id}'"));
        verify.ok();
        assert!(verify.stderr.contains("restorable"), "{}", verify.stderr);
        let restored = w.d.join("restored.db");
        let _ = std::fs::remove_file(&restored);
        w.script(&format!("set -o pipefail; {fetch} | wm-restore -q -i '{id}' --db '{}'", restored.display())).ok();
        assert_eq!(content_digest(&restored), content_digest(&w.db), "restored through `{fetch}` equals the source");
    }

    /// A good run commits; a producer killed mid-stream and a truncated
    /// snapshot leave the remote unchanged. Returns the committed name.
    fn commit_and_fail_producers(&self, w: &mut World) -> &'static str {
        let name = "memory-20261130T031500Z.db.age";
        let out = w.backup(self.recipe, &self.dest, &["--name", name]);
        out.ok();
        assert_eq!(out.stderr, "", "a good run is quiet");
        let all = self.assert_counted(w, &[name], "a good run");
        assert_eq!(all, [name], "no partial upload left");
        w.producer(Producer::Killed);
        self.assert_fails(w, "wm-snapshot exited 137", "wm-snapshot killed mid-stream", true);
        w.producer(Producer::Truncated);
        self.assert_fails(w, "wm-seal exited 1", "a truncated snapshot", true);
        w.producer(Producer::Good);
        name
    }

    /// The file system behind the remote full (all but 48 KiB): the upload
    /// fails; then the space is given back.
    fn full_disk(&self, w: &World, fs: &SmallFs, exact: bool) {
        fs.fill(48 * 1024);
        self.assert_fails(w, &format!("{} exited", self.upload), "a full disk behind the remote", exact);
        std::fs::remove_file(fs.path.join("filler")).unwrap();
    }

    /// A newer good run with `--keep-last 1` prunes the remote through its
    /// listing: the newer backup is all that is left, and a partial upload
    /// a day old (its name's time) goes too.
    fn assert_prunes(&self, w: &World) {
        let newer = "memory-20261202T031500Z.db.age";
        let out = w.backup(self.recipe, &self.dest, &["--name", newer, "--keep-last", "1"]);
        out.ok();
        assert_eq!(out.stderr, "", "a good run is quiet");
        assert_eq!(self.listing(w), [newer], "what --keep-last 1 leaves");
    }

    /// All of the above where the remote outlives a full disk.
    fn exercise(&self, w: &mut World, full: Option<&SmallFs>) {
        let name = self.commit_and_fail_producers(w);
        if let Some(fs) = full {
            self.full_disk(w, fs, true);
        }
        self.assert_reads_back(w, name);
        self.assert_prunes(w);
    }
}

/// A tmpfs of `size` mounted for the test (root only; CI runs as root),
/// unmounted when dropped; None (the cases skipped and the skip recorded)
/// where it cannot be mounted, and a failure with CI=true.
struct SmallFs {
    point: Option<tempfile::TempDir>,
    path: PathBuf,
}

fn small_fs(size: &str) -> Option<SmallFs> {
    let point = tempfile::Builder::new().prefix("wmsmall").tempdir().unwrap();
    let mounted = nix::unistd::geteuid().is_root()
        && Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"])
            .arg(point.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !mounted {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("no small file system for the full-disk cases: mounting a tmpfs needs root");
        }
        eprintln!("SKIPPED: the full-disk cases (mounting a tmpfs needs root)");
        record_skip("no small file system (mount -t tmpfs needs root)", Skip::SomeCases);
        return None;
    }
    let path = point.path().to_path_buf();
    Some(SmallFs { point: Some(point), path })
}

impl SmallFs {
    /// Fills the file system until `leave` bytes are free.
    fn fill(&self, leave: u64) {
        let st = nix::sys::statvfs::statvfs(&self.path).unwrap();
        let free = st.blocks_available() as u64 * st.fragment_size() as u64;
        assert!(free > leave, "{} has {free} bytes free", self.path.display());
        let f = std::fs::File::create(self.path.join("filler")).unwrap();
        f.set_len(0).unwrap();
        // set_len makes a sparse file: write the bytes for real.
        let chunk = vec![0x5a_u8; 1 << 16];
        let mut w = std::io::BufWriter::new(f);
        let mut left = free - leave;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            std::io::Write::write_all(&mut w, &chunk[..n]).unwrap();
            left -= n as u64;
        }
        std::io::Write::flush(&mut w).unwrap();
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        if let Some(point) = self.point.take() {
            let _ = Command::new("umount").arg("-l").arg(point.path()).status();
        }
    }
}

/// The small file system when there is one, else a plain directory of the
/// test's: the directory `name` on it, created.
fn remote_dir(w: &World, fs: &Option<SmallFs>, name: &str) -> PathBuf {
    let p = match fs {
        Some(fs) => fs.path.join(name),
        None => w.d.join(name),
    };
    std::fs::create_dir_all(&p).unwrap();
    p
}

#[test]
fn rclone_recipe_commits_only_whole_backups_to_a_webdav_remote() {
    if !have("rclone") || !have("sqlite3") {
        return;
    }
    let mut w = World::new();
    let fs = small_fs("16m");
    let served = remote_dir(&w, &fs, "served");
    std::fs::create_dir(served.join("backups")).unwrap();
    let conf = w.d.write("rclone.conf", "");
    let (_server, envs) = webdav(&served, &conf, &w.d.path);
    w.envs = envs;
    let remote = Remote {
        recipe: RECIPE_RCLONE,
        dest: "wmtest:backups".into(),
        files: served,
        list: "rclone lsf wmtest:backups".into(),
        fetch: "rclone cat wmtest:backups/{}".into(),
        upload: "rclone rcat",
    };
    remote.exercise(&mut w, fs.as_ref());
}

#[test]
fn rclone_recipe_commits_only_whole_backups_to_a_local_remote() {
    if !have("rclone") || !have("sqlite3") {
        return;
    }
    let mut w = World::new();
    let fs = small_fs("16m");
    let dir = remote_dir(&w, &fs, "remote");
    let conf = w.d.write("rclone.conf", "");
    w.envs = vec![("RCLONE_CONFIG".into(), conf.display().to_string())];
    let remote = Remote {
        recipe: RECIPE_RCLONE,
        dest: dir.display().to_string(),
        files: dir.clone(),
        list: format!("rclone lsf '{}'", dir.display()),
        fetch: format!("rclone cat '{}/{{}}'", dir.display()),
        upload: "rclone rcat",
    };
    remote.exercise(&mut w, fs.as_ref());
}

/// The s3rver executable: `WM_S3RVER`, else where `npm install --prefix
/// TARGET/npm s3rver` puts it; None (skipped and recorded) without it, a
/// failure with CI=true.
fn s3rver() -> Option<PathBuf> {
    let path = std::env::var_os("WM_S3RVER").map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("npm/node_modules/.bin/s3rver")
    });
    if path.is_file() && have("node") {
        return Some(path);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "s3rver is required when CI=true: npm install --no-save --prefix {} age-encryption@0.3.1 s3rver@3.7.1 \
             (one command: a later --no-save install removes the earlier one's packages), or set WM_S3RVER",
            Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("npm").display()
        );
    }
    eprintln!("SKIPPED: s3rver is not installed at {}", path.display());
    record_skip("npm package s3rver not installed", Skip::Test);
    None
}

/// s3rver serving `data` (bucket `backups`) on a free loopback port, and the
/// AWS CLI's environment for it, cut off from any configuration of the
/// machine's.
fn s3_server(w: &World, s3rver: &Path, data: &Path) -> (Server, Vec<(String, String)>) {
    let port = free_port();
    let mut server = Server {
        name: "s3rver",
        child: Command::new(s3rver)
            .arg("-d")
            .arg(data)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "--configure-bucket", "backups", "--silent"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start s3rver"),
    };
    server.wait_for_port(port);
    let envs = [
        ("AWS_ACCESS_KEY_ID", "S3RVER".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "S3RVER".into()),
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
        ("AWS_CONFIG_FILE", w.d.join("aws-config").display().to_string()),
        ("AWS_SHARED_CREDENTIALS_FILE", w.d.join("aws-credentials").display().to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_MAX_ATTEMPTS", "2".into()),
    ];
    (server, envs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

#[test]
fn s3_recipe_commits_only_whole_backups_to_an_s3_server() {
    if !have("aws") || !have("sqlite3") {
        return;
    }
    let Some(s3rver) = s3rver() else { return };
    let mut w = World::new();
    let fs = small_fs("16m");
    let data = remote_dir(&w, &fs, "s3data");
    let (mut server, envs) = s3_server(&w, &s3rver, &data);
    w.envs = envs;
    let mut remote = Remote {
        recipe: RECIPE_S3,
        dest: "s3://backups/nightly".into(),
        files: data.clone(),
        list: "aws s3 ls s3://backups/nightly/ | awk '{print $4}'".into(),
        fetch: "aws s3 cp s3://backups/nightly/{} -".into(),
        upload: "aws s3 cp",
    };
    let name = remote.commit_and_fail_producers(&mut w);
    if let Some(fs) = &fs {
        // s3rver dies of ENOSPC, leaving the data of the partial upload that
        // no one can then remove: the committed object's files stay
        // byte-identical, and a new s3rver lists the partial upload, which
        // wm-prune never counts.
        remote.full_disk(&w, fs, false);
        drop(server);
        let (again, envs) = s3_server(&w, &s3rver, &data);
        server = again;
        w.envs = envs;
        remote.files = data.clone();
        remote.assert_counted(&w, &[name], "after a full disk");
    }
    remote.assert_reads_back(&w, name);
    remote.assert_prunes(&w);
    drop(server);
}

/// sshd on a free loopback port that lets in a new key, and the
/// WM_SSH_COMMAND that logs in with it.
fn ssh_server(w: &World) -> (Server, Vec<(String, String)>) {
    let keygen = |name: &str| {
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "wmtest", "-f"])
            .arg(w.d.join(name))
            .status()
            .unwrap();
        assert!(st.success(), "ssh-keygen {name}");
        w.d.join(name)
    };
    let hostkey = keygen("hostkey");
    let userkey = keygen("userkey");
    std::fs::copy(w.d.join("userkey.pub"), w.d.join("authorized_keys")).unwrap();
    if nix::unistd::geteuid().is_root() {
        // sshd's privilege separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
    }
    let port = free_port();
    let config = w.d.write(
        "sshd_config",
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
             PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             StrictModes no\nUsePAM no\nPidFile {}\nPermitRootLogin prohibit-password\n",
            hostkey.display(),
            w.d.join("authorized_keys").display(),
            w.d.join("sshd.pid").display()
        ),
    );
    let mut server = Server {
        name: "sshd",
        child: Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sshd"),
    };
    server.wait_for_port(port);
    let ssh = format!(
        "ssh -F /dev/null -p {port} -i {} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no \
         -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR",
        userkey.display()
    );
    (server, vec![("WM_SSH_COMMAND".into(), ssh)])
}

#[test]
fn ssh_recipe_commits_only_whole_backups_to_a_host() {
    if !have("/usr/sbin/sshd") || !have("ssh") || !have("ssh-keygen") || !have("sqlite3") {
        return;
    }
    let mut w = World::new();
    let fs = small_fs("16m");
    let dir = remote_dir(&w, &fs, "remote");
    let (_server, envs) = ssh_server(&w);
    w.envs = envs;
    let remote = Remote {
        recipe: RECIPE_SSH,
        dest: format!("127.0.0.1:{}", dir.display()),
        files: dir.clone(),
        list: format!("$WM_SSH_COMMAND 127.0.0.1 \"ls -A '{}'\"", dir.display()),
        fetch: format!("$WM_SSH_COMMAND 127.0.0.1 \"cat '{}/{{}}'\"", dir.display()),
        upload: "ssh cat",
    };
    remote.exercise(&mut w, fs.as_ref());
}

/// The nightly job (the rclone recipe with `--keep-*`) over ten nights of
/// a webdav remote, three of them failing: wm-snapshot killed, a truncated
/// snapshot, the remote unreachable. Each failure leaves the remote as it
/// was; the remote ends with exactly what the policy keeps of the seven
/// successful nights, as if the failed ones had never been tried. Names are
/// given with --name, so the ten nights take seconds, not days.
#[test]
fn ten_nights_with_three_failures_keep_what_the_policy_keeps_of_the_good_nights() {
    if !have("rclone") {
        return;
    }
    let mut w = World::new();
    let served = w.d.mkdir("served");
    let conf = w.d.write("rclone.conf", "");
    let (_server, envs) = webdav(&served, &conf, &w.d.path);
    let reachable = envs.clone();
    let unreachable: Vec<(String, String)> = envs
        .iter()
        .map(|(k, v)| match k.as_str() {
            "RCLONE_CONFIG_WMTEST_URL" => (k.clone(), format!("http://127.0.0.1:{}", free_port())),
            _ => (k.clone(), v.clone()),
        })
        .chain([("RCLONE_LOW_LEVEL_RETRIES".to_string(), "1".to_string())])
        .collect();
    // 1 November 2026 is a Sunday (ISO week 44); 2-8 November is week 45.
    let night = |n: u32| format!("memory-202611{n:02}T031500Z.db.age");
    let policy = ["--keep-last", "3", "--keep-weekly", "2"];
    let mut good = Vec::new();
    for n in 1..=10 {
        w.envs = if n == 10 { unreachable.clone() } else { reachable.clone() };
        w.producer(match n {
            4 => Producer::Killed,
            9 => Producer::Truncated,
            _ => Producer::Good,
        });
        let before = tree(&served);
        let name = night(n);
        let mut args = vec!["--name", &name];
        args.extend(policy);
        let out = w.backup(RECIPE_RCLONE, "wmtest:", &args);
        if matches!(n, 4 | 9 | 10) {
            assert_eq!(out.code(), 1, "night {n} fails: {}", out.stderr);
            assert!(out.stderr.contains("nothing committed"), "night {n}: {}", out.stderr);
            assert_unchanged(&before, &tree(&served), &format!("night {n}"));
        } else {
            out.ok();
            good.push(name);
        }
    }
    w.envs = reachable;
    let listed = w.script("rclone lsf wmtest:");
    listed.ok();
    let left: Vec<String> = String::from_utf8_lossy(&listed.stdout).lines().map(str::to_string).collect();
    // keep-last 3: nights 8, 7, 6; keep-weekly 2: week 45's newest (8), week 44's (1).
    assert_eq!(left, [night(1), night(6), night(7), night(8)], "the remote after ten nights");

    // The same policy over the good nights' names alone drops the rest.
    let out = run(WM_PRUNE, &w.d).args(policy).args(["-"]).stdin(good.join("\n")).go();
    out.ok();
    let dropped: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    let kept: Vec<String> = good.iter().filter(|g| !dropped.contains(g)).cloned().collect();
    assert_eq!(left, kept, "what the policy keeps of the successful nights");
}

/// Usage errors: exit 2, one line naming the problem and --help, before
/// anything runs or is uploaded; --help exits 0.
#[test]
fn recipes_refuse_bad_usage_with_exit_2_and_one_line() {
    let w = World::new();
    for recipe in [RECIPE_RCLONE, RECIPE_S3, RECIPE_SSH] {
        let prog = Path::new(recipe).file_name().unwrap().to_str().unwrap();
        let help = w.bash(recipe, &["--help"]);
        help.ok();
        assert!(String::from_utf8_lossy(&help.stdout).starts_with(&format!("Usage: {prog} ")), "{prog} --help");
        let dest = if recipe == RECIPE_S3 { "s3://backups/x" } else { "host:dir" };
        let cases: [(&[&str], &str); 7] = [
            (&[], "no destination"),
            (&["-r", "age1x"], "no destination"),
            (&[dest], "no recipient"),
            (&["-r", "age1x", "--bogus", dest], "unknown option --bogus"),
            (&["-r", "age1x", "--name", "a/b.db.age", dest], "a name, not a path"),
            (&["-r", "age1x", "--name", "m.db.age.partial", dest], ".partial is the suffix of uploads in progress"),
            (&["-r", "age1x", "--keep-daily", "x", dest], "wm-prune refuses the policy"),
        ];
        for (args, needle) in cases {
            let out = w.bash(recipe, args);
            assert_eq!(out.code(), 2, "{prog} {args:?}: {}", out.stderr);
            assert_eq!(out.stderr.lines().count(), 1, "{prog} {args:?}: one line: {}", out.stderr);
            assert!(out.stderr.starts_with(&format!("{prog}: ")), "{prog} {args:?}: {}", out.stderr);
            assert!(out.stderr.contains(needle), "{prog} {args:?}: says {needle:?}: {}", out.stderr);
        }
    }
    let out = w.bash(RECIPE_S3, &["-r", "age1x", "backups/x"]);
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(out.stderr.contains("not an s3://BUCKET[/PREFIX] address"), "{}", out.stderr);
    let out = w.bash(RECIPE_SSH, &["-r", "age1x", "just-a-dir"]);
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(out.stderr.contains("not a [USER@]HOST:DIR address"), "{}", out.stderr);
    assert!(w.d.tree().keys().all(|k| !k.contains(".db.age")), "nothing written");
}

/// The recipes are what users copy: shellcheck finds nothing in them.
#[test]
fn recipes_pass_shellcheck() {
    if !have("shellcheck") {
        return;
    }
    let out = Command::new("shellcheck").args([RECIPE_RCLONE, RECIPE_S3, RECIPE_SSH]).output().expect("run shellcheck");
    assert!(out.status.success(), "shellcheck:\n{}", String::from_utf8_lossy(&out.stdout));
}

/// Why the recipes exist, and proof that the killed producer above really
/// damages what it reaches: the same kill under a plain pipe into `rclone
/// rcat NAME` replaces the good backup with one that does not verify, and
/// `pipefail` only reports it afterwards.
#[test]
fn a_plain_pipe_into_the_uploader_replaces_the_good_backup() {
    if !have("rclone") {
        return;
    }
    let mut w = World::new();
    let dir = w.d.mkdir("remote");
    let conf = w.d.write("rclone.conf", "");
    w.envs = vec![("RCLONE_CONFIG".into(), conf.display().to_string())];
    let target = dir.join("memory.db.age");
    let line = format!(
        "set -o pipefail; wm-snapshot --db '{}' | wm-seal -q -r '{}' | rclone -q rcat '{}'",
        w.db.display(),
        w.recipient,
        target.display()
    );
    w.script(&line).ok();
    let good = std::fs::read(&target).unwrap();
    w.producer(Producer::Killed);
    let out = w.script(&line);
    // pipefail: the last stage that failed, wm-seal refusing the cut input.
    assert_eq!(out.code(), 1, "the pipeline fails: {}", out.stderr);
    assert!(out.stderr.contains("truncated SQLite input"), "{}", out.stderr);
    let now = std::fs::read(&target).unwrap();
    assert!(now.len() < good.len(), "the good backup ({} bytes) was replaced by {} bytes", good.len(), now.len());
    let verify = run(WM_VERIFY, &w.d).args(["-i", w.id.to_str().unwrap(), target.to_str().unwrap()]).go();
    assert_eq!(verify.code(), 1, "what replaced it does not verify: {}", verify.stderr);
}
