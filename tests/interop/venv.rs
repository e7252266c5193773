//! The Python side of the redlock-py interop test, built on first use: a virtualenv at
//! `<target dir>/interop-venv` (`target/interop-venv` unless `CARGO_TARGET_DIR` or
//! `build.target-dir` moves the target dir) with `redlock-py` and `redis` at the pinned versions
//! from PyPI, so `cargo test` needs nothing prepared beyond `python3` with its venv module.
//!
//! [`prepare`] returns the interpreter to run the driver with:
//! - `$RESPLOCK_PYTHON` when set: used as is (a path, or a command on `PATH`) once it can
//!   `import redlock, redis`; nothing is built.
//! - Else the venv, when its `bin/python` imports both at the pinned versions.
//! - Else it builds the venv: the first `python3` on `PATH` runs `-m venv` into a private
//!   temporary directory next to it, that venv's pip installs the pins, the result must import,
//!   and only then is it renamed into place (an incomplete or outdated venv is first renamed
//!   aside, then removed). A half-built venv is therefore never at the final path.
//!
//! Concurrent test binaries (or threads) build it once: building happens only while holding
//! `<target dir>/interop-venv.lock`, created with `create_new` (an atomic exclusive create)
//! and holding the holder's PID, host and a unique id. The holder refreshes its mtime every
//! [`HEARTBEAT`]; a waiter breaks the lock when the holder's PID is gone (same host, via
//! `/proc`) or the mtime is older than [`STALE_AFTER`], and otherwise waits up to [`LOCK_WAIT`].
//! Waiters re-check the venv after getting the lock, so they use the one just built. The lock
//! only avoids duplicate work: even if two builders ran at once, each builds into its own
//! temporary directory and publishes it with `rename`, so the final path only ever holds a
//! complete venv. Leftovers of builders that died (`interop-venv.tmp-<pid>-*`,
//! `interop-venv.old-<pid>-*`) are removed by the next lock holder.
//!
//! Every failure (no `python3`, no venv module, PyPI unreachable, a broken `$RESPLOCK_PYTHON`)
//! is an `Err` with one paragraph naming what is missing and how to fix it, followed by the
//! tail of the failing command's output; the tests turn it into a failure, never a skip.
//!
//! The pins are `REDLOCK_PY_VERSION` (default [`REDLOCK_PY_VERSION`]) and `REDIS_PY_VERSION`
//! (default [`REDIS_PY_VERSION`]) from the environment; a venv with other versions is rebuilt.
//! Why these pins: see `.ci/interop-env.sh`.

use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// redlock-py 1.0.8: its latest (and final) release, the one the seed docs describe.
pub const REDLOCK_PY_VERSION: &str = "1.0.8";
/// redis-py 5.0.8: the last 5.0.x, installs on Python >= 3.7, keeps redis-py's historical
/// defaults (no socket timeouts), i.e. what redlock-py was written against.
pub const REDIS_PY_VERSION: &str = "5.0.8";
/// The venv's directory name inside the target dir.
pub const VENV_NAME: &str = "interop-venv";

/// How often the lock holder refreshes the lock file's mtime.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A lock file not refreshed for this long belongs to a builder that is gone.
pub const STALE_AFTER: Duration = Duration::from_secs(60);
/// How long to wait for a live builder before giving up.
pub const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);

/// How many trailing lines of a failing command's output an error quotes.
const OUTPUT_TAIL_LINES: usize = 20;

/// Prints the installed versions; exits 4 when they differ from the two arguments (if given).
const CHECK_SCRIPT: &str = "import sys
from importlib.metadata import version
import redlock, redis
got = (version('redlock-py'), version('redis'))
print('redlock-py %s, redis %s, python %s' % (got[0], got[1], sys.version.split()[0]))
sys.exit(0 if len(sys.argv) < 3 or got == tuple(sys.argv[1:3]) else 4)
";

/// Where and how to get the interop interpreter. [`Setup::from_env`] is what the tests use;
/// the setup's own tests build one by hand to inject paths.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The venv goes to `target_dir/interop-venv`, the lock to `target_dir/interop-venv.lock`.
    pub target_dir: PathBuf,
    /// `$RESPLOCK_PYTHON`: an interpreter to use instead of the venv.
    pub resplock_python: Option<OsString>,
    /// `$PATH`, searched for `python3` (and for a bare `$RESPLOCK_PYTHON` name).
    pub path: Option<OsString>,
    pub redlock_py: String,
    pub redis_py: String,
    /// Environment changes for every command run (`None` removes the variable).
    pub env: Vec<(OsString, Option<OsString>)>,
}

impl Setup {
    /// The real environment: the cargo target dir this test was built in, `$RESPLOCK_PYTHON`,
    /// `$PATH`, and the pins with their `REDLOCK_PY_VERSION` / `REDIS_PY_VERSION` overrides.
    pub fn from_env() -> Setup {
        let nonempty = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Setup {
            resplock_python: std::env::var_os("RESPLOCK_PYTHON").filter(|v| !v.is_empty()),
            redlock_py: nonempty("REDLOCK_PY_VERSION")
                .unwrap_or_else(|| REDLOCK_PY_VERSION.to_owned()),
            redis_py: nonempty("REDIS_PY_VERSION").unwrap_or_else(|| REDIS_PY_VERSION.to_owned()),
            ..Setup::in_target_dir(cargo_target_dir())
        }
    }

    /// A venv in `target_dir` with the default pins, `python3` from the real `$PATH`, no
    /// `$RESPLOCK_PYTHON`.
    pub fn in_target_dir(target_dir: impl Into<PathBuf>) -> Setup {
        let target_dir = target_dir.into();
        Setup {
            target_dir: std::path::absolute(&target_dir).unwrap_or(target_dir),
            resplock_python: None,
            path: std::env::var_os("PATH"),
            redlock_py: REDLOCK_PY_VERSION.to_owned(),
            redis_py: REDIS_PY_VERSION.to_owned(),
            env: Vec::new(),
        }
    }

    pub fn venv_dir(&self) -> PathBuf {
        self.target_dir.join(VENV_NAME)
    }

    pub fn lock_path(&self) -> PathBuf {
        self.target_dir.join(format!("{VENV_NAME}.lock"))
    }

    fn pins(&self) -> String {
        format!("redlock-py=={} redis=={}", self.redlock_py, self.redis_py)
    }

    fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.stdin(Stdio::null());
        if let Some(path) = &self.path {
            cmd.env("PATH", path);
        } else {
            cmd.env_remove("PATH");
        }
        for (name, value) in &self.env {
            match value {
                Some(v) => cmd.env(name, v),
                None => cmd.env_remove(name),
            };
        }
        cmd
    }

    /// The fix every message ends with: the override.
    fn override_hint(&self) -> String {
        format!(
            "or point RESPLOCK_PYTHON at a Python interpreter that can `import redlock, redis` \
             (redlock-py=={} and redis=={})",
            self.redlock_py, self.redis_py
        )
    }
}

/// The cargo target dir of this build: `CARGO_TARGET_TMPDIR` is `<target dir>/tmp`, so this
/// honours `CARGO_TARGET_DIR` and `build.target-dir`.
pub fn cargo_target_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// A usable interpreter.
#[derive(Debug)]
pub struct Ready {
    pub python: PathBuf,
    /// `redlock-py X, redis Y, python Z`.
    pub versions: String,
    /// Whether this call built the venv (false: it was there, or `$RESPLOCK_PYTHON`).
    pub built: bool,
}

/// Returns the interop interpreter, building the venv when it is missing or incomplete. See the
/// module docs.
pub fn prepare(setup: &Setup) -> Result<Ready, String> {
    if let Some(name) = &setup.resplock_python {
        return use_override(setup, name);
    }
    let venv = setup.venv_dir();
    if let Ok(versions) = check_venv(setup, &venv) {
        return Ok(Ready {
            python: venv_python(&venv),
            versions,
            built: false,
        });
    }
    let python3 = find_on_path(setup.path.as_deref(), OsStr::new("python3")).ok_or_else(|| {
        format!(
            "redlock-py interop: no `python3` on PATH, so the test cannot build its Python \
             environment ({}: {} from PyPI, built once on first use). Install Python with its \
             venv module (Debian/Ubuntu: `sudo apt-get install -y python3 python3-venv`) and \
             rerun, {}.",
            venv.display(),
            setup.pins(),
            setup.override_hint()
        )
    })?;
    fs::create_dir_all(&setup.target_dir).map_err(|e| {
        format!(
            "redlock-py interop: cannot create {}: {e}",
            setup.target_dir.display()
        )
    })?;

    let _lock = BuildLock::acquire(&setup.lock_path(), LOCK_WAIT)?;
    // Someone may have built it while we waited for the lock.
    if let Ok(versions) = check_venv(setup, &venv) {
        return Ok(Ready {
            python: venv_python(&venv),
            versions,
            built: false,
        });
    }
    remove_leftovers(&setup.target_dir);
    eprintln!(
        "redlock-py interop: building {} ({} from PyPI; once, on first use)",
        venv.display(),
        setup.pins()
    );
    let tmp = sibling(&venv, "tmp");
    let built = build(setup, &python3, &tmp, &venv).and_then(|()| {
        publish(&tmp, &venv).map_err(|e| {
            format!(
                "redlock-py interop: cannot move the new venv {} to {}: {e}",
                tmp.display(),
                venv.display()
            )
        })
    });
    let _ = remove_any(&tmp);
    built?;
    let versions = check_venv(setup, &venv).map_err(|out| {
        format!(
            "redlock-py interop: the venv just built at {} does not import redlock-py and \
             redis at {}; delete it and rerun, {}.{out}",
            venv.display(),
            setup.pins(),
            setup.override_hint()
        )
    })?;
    eprintln!("redlock-py interop: built {} ({versions})", venv.display());
    Ok(Ready {
        python: venv_python(&venv),
        versions,
        built: true,
    })
}

pub fn venv_python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

fn use_override(setup: &Setup, name: &OsStr) -> Result<Ready, String> {
    let shown = Path::new(name).display().to_string();
    let found = if name.to_string_lossy().contains('/') {
        Some(PathBuf::from(name)).filter(|p| p.is_file())
    } else {
        find_on_path(setup.path.as_deref(), name)
    };
    let python = found.ok_or_else(|| {
        format!(
            "redlock-py interop: RESPLOCK_PYTHON={shown} does not name an existing file or a \
             command on PATH. Unset RESPLOCK_PYTHON to let the test build {} itself from PyPI \
             (it needs `python3` with its venv module: `sudo apt-get install -y python3 \
             python3-venv`), {}.",
            setup.venv_dir().display(),
            setup.override_hint()
        )
    })?;
    let versions = check(setup, &python, false).map_err(|out| {
        format!(
            "redlock-py interop: RESPLOCK_PYTHON={shown} cannot `import redlock, redis`. \
             Install them into it (`{shown} -m pip install {}`), or unset RESPLOCK_PYTHON to \
             let the test build {} itself from PyPI.{out}",
            setup.pins(),
            setup.venv_dir().display()
        )
    })?;
    Ok(Ready {
        python,
        versions,
        built: false,
    })
}

/// `Ok(versions)` when the venv's interpreter imports both at the pinned versions; else the
/// output explaining why not.
fn check_venv(setup: &Setup, venv: &Path) -> Result<String, String> {
    let python = venv_python(venv);
    if !python.is_file() {
        return Err(format!("\nno interpreter at {}", python.display()));
    }
    check(setup, &python, true)
}

fn check(setup: &Setup, python: &Path, pinned: bool) -> Result<String, String> {
    let mut cmd = setup.command(python);
    cmd.arg("-c").arg(CHECK_SCRIPT);
    if pinned {
        cmd.arg(&setup.redlock_py).arg(&setup.redis_py);
    }
    let out = run(&mut cmd).map_err(|e| format!("\ncannot run {}: {e}", python.display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(output_tail(
            &format!("{} -c <import check>", python.display()),
            &out,
        ))
    }
}

/// `python3 -m venv tmp`, pip install the pins, fix the paths, check. `tmp` must not exist.
fn build(setup: &Setup, python3: &Path, tmp: &Path, venv: &Path) -> Result<(), String> {
    let mut cmd = setup.command(python3);
    cmd.arg("-m").arg("venv").arg(tmp);
    let out = run(&mut cmd)
        .map_err(|e| format!("redlock-py interop: cannot run {}: {e}", python3.display()))?;
    if !out.status.success() || !venv_python(tmp).is_file() {
        let text = both(&out);
        let tail = output_tail(
            &format!("{} -m venv {}", python3.display(), tmp.display()),
            &out,
        );
        return Err(
            if text.contains("ensurepip") || text.contains("No module named venv") {
                format!(
                    "redlock-py interop: {} cannot create a virtualenv because Python's venv \
                     module (with ensurepip) is missing. Install it (Debian/Ubuntu: `sudo \
                     apt-get install -y python3-venv`) and rerun, so the test can build {} \
                     with {} from PyPI, {}.{tail}",
                    python3.display(),
                    venv.display(),
                    setup.pins(),
                    setup.override_hint()
                )
            } else {
                format!(
                    "redlock-py interop: `{} -m venv` failed ({}), so the test cannot build {}. \
                     Check that this Python works and has its venv module (Debian/Ubuntu: `sudo \
                     apt-get install -y python3 python3-venv`), {}.{tail}",
                    python3.display(),
                    out.status,
                    venv.display(),
                    setup.override_hint()
                )
            },
        );
    }

    let python = venv_python(tmp);
    let mut cmd = setup.command(&python);
    cmd.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
    ])
    .arg(format!("redlock-py=={}", setup.redlock_py))
    .arg(format!("redis=={}", setup.redis_py));
    let out = run(&mut cmd)
        .map_err(|e| format!("redlock-py interop: cannot run {}: {e}", python.display()))?;
    if !out.status.success() {
        let tail = output_tail(&format!("{} -m pip install", python.display()), &out);
        return Err(if looks_offline(&both(&out)) {
            format!(
                "redlock-py interop: pip could not reach the package index (PyPI, \
                 https://pypi.org/simple, unless pip is configured with another) or got no \
                 versions from it, so it cannot install {} into {}. The test downloads them \
                 once, on first use: check the network connection or proxy (pip honours \
                 HTTPS_PROXY, and PIP_INDEX_URL for a mirror) and rerun, {}.{tail}",
                setup.pins(),
                venv.display(),
                setup.override_hint()
            )
        } else {
            format!(
                "redlock-py interop: pip failed to install {} into {} ({}). Check that the \
                 package index (PyPI unless pip is configured with another) serves these \
                 versions for this Python, then rerun, {}.{tail}",
                setup.pins(),
                venv.display(),
                out.status,
                setup.override_hint()
            )
        });
    }

    fix_paths(tmp, venv);
    check_venv(setup, tmp).map(drop).map_err(|out| {
        format!(
            "redlock-py interop: pip installed {} into {} but they do not import; {}.{out}",
            setup.pins(),
            tmp.display(),
            setup.override_hint()
        )
    })
}

/// Network failures in pip's output (as opposed to, say, a version that does not exist). pip
/// reports an index it could not reach as one with no versions at all (after logging the
/// connection errors while it retries).
fn looks_offline(text: &str) -> bool {
    [
        "(from versions: none)",
        "NewConnectionError",
        "Failed to establish a new connection",
        "Connection refused",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "Max retries exceeded",
        "Temporary failure in name resolution",
        "Name or service not known",
        "Network is unreachable",
        "ProxyError",
        "SSLError",
    ]
    .iter()
    .any(|marker| text.contains(marker))
}

/// A venv is built under a temporary name: the text files that name its directory (`pip`
/// scripts' shebangs, `activate*`, `pyvenv.cfg`) are rewritten to name the final one, so it is
/// the same as one created in place. `bin/python` finds its venv relative to itself anyway.
fn fix_paths(tmp: &Path, venv: &Path) {
    let (from, to) = (
        tmp.as_os_str().as_encoded_bytes(),
        venv.as_os_str().as_encoded_bytes(),
    );
    let mut files = vec![tmp.join("pyvenv.cfg")];
    if let Ok(entries) = fs::read_dir(tmp.join("bin")) {
        files.extend(entries.flatten().map(|e| e.path()));
    }
    for file in files {
        if !fs::symlink_metadata(&file).is_ok_and(|m| m.file_type().is_file()) {
            continue;
        }
        let Ok(bytes) = fs::read(&file) else {
            continue;
        };
        if let Some(fixed) = replace_all(&bytes, from, to) {
            let _ = fs::write(&file, fixed);
        }
    }
}

fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    let mut replaced = false;
    while let Some(i) = rest.windows(from.len()).position(|w| w == from) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(to);
        rest = &rest[i + from.len()..];
        replaced = true;
    }
    out.extend_from_slice(rest);
    replaced.then_some(out)
}

/// Moves `tmp` to `venv`, first moving whatever is at `venv` aside (then removing it).
fn publish(tmp: &Path, venv: &Path) -> io::Result<()> {
    let aside = if fs::symlink_metadata(venv).is_ok() {
        let aside = sibling(venv, "old");
        fs::rename(venv, &aside)?;
        Some(aside)
    } else {
        None
    };
    let moved = fs::rename(tmp, venv);
    if let Some(aside) = aside {
        let _ = remove_any(&aside);
    }
    moved
}

/// `<venv>.<kind>-<pid>-<n>`: a name no other builder uses.
fn sibling(venv: &Path, kind: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = venv.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{kind}-{}-{n}", std::process::id()));
    venv.with_file_name(name)
}

/// Removes `interop-venv.{tmp,old}-<pid>-*` left by builders that are gone (on this host).
fn remove_leftovers(target_dir: &Path) {
    let Ok(entries) = fs::read_dir(target_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = [".tmp-", ".old-"]
            .iter()
            .find_map(|kind| name.strip_prefix(&format!("{VENV_NAME}{kind}")))
        else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if pid != std::process::id() && pid_alive(pid) == Some(false) {
                let _ = remove_any(&entry.path());
            }
        }
    }
}

fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// `Some(alive)` on a system with `/proc`, `None` when it cannot tell.
fn pid_alive(pid: u32) -> Option<bool> {
    if pid == std::process::id() {
        return Some(true);
    }
    if !Path::new("/proc/self/stat").exists() {
        return None;
    }
    Some(match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    })
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

fn find_on_path(path: Option<&OsStr>, name: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .map(|dir| dir.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// `cmd.output()`, retrying `ETXTBSY` (a script just written while another thread forked).
fn run(cmd: &mut Command) -> io::Result<Output> {
    let mut tries = 0;
    loop {
        match cmd.output() {
            Err(e) if e.raw_os_error() == Some(26) && tries < 50 => {
                tries += 1;
                thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn both(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn output_tail(what: &str, out: &Output) -> String {
    let text = both(out);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let skip = lines.len().saturating_sub(OUTPUT_TAIL_LINES);
    format!(
        "\n--- `{what}` ({}), last lines of its output ---\n{}",
        out.status,
        lines[skip..].join("\n")
    )
}

/// The exclusive build lock (see the module docs). Released (removed) on drop.
pub struct BuildLock {
    path: PathBuf,
    token: String,
    stop: Arc<AtomicBool>,
    heartbeat: Option<thread::JoinHandle<()>>,
}

impl BuildLock {
    /// Takes the lock at `path`, breaking a stale one, waiting at most `max_wait` for a live
    /// holder.
    pub fn acquire(path: &Path, max_wait: Duration) -> Result<BuildLock, String> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let token = format!(
            "pid {}\nhost {}\nid {}-{nanos}\n",
            std::process::id(),
            hostname(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let start = Instant::now();
        let mut told = false;
        loop {
            match OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut file) => {
                    let written = file
                        .write_all(token.as_bytes())
                        .and_then(|()| file.sync_all());
                    if let Err(e) = written {
                        let _ = fs::remove_file(path);
                        return Err(format!(
                            "redlock-py interop: cannot write the lock file {}: {e}",
                            path.display()
                        ));
                    }
                    let stop = Arc::new(AtomicBool::new(false));
                    let heartbeat = {
                        let (path, token, stop) = (path.to_owned(), token.clone(), stop.clone());
                        thread::spawn(move || heartbeat(&path, &token, &stop))
                    };
                    return Ok(BuildLock {
                        path: path.to_owned(),
                        token,
                        stop,
                        heartbeat: Some(heartbeat),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let seen = fs::read_to_string(path).unwrap_or_default();
                    if let Some(why) = stale(path, &seen) {
                        eprintln!(
                            "redlock-py interop: breaking the stale lock {} ({why})",
                            path.display()
                        );
                        // Only if it is still the one judged stale. A holder that replaced it in
                        // between could lose its lock here: that costs a second build, never a
                        // broken venv (builds never share a directory).
                        if fs::read_to_string(path).is_ok_and(|now| now == seen) {
                            let _ = fs::remove_file(path);
                        }
                        continue;
                    }
                    if start.elapsed() > max_wait {
                        return Err(format!(
                            "redlock-py interop: gave up after {}s waiting for the lock {} \
                             held by another build of the venv ({}); if no test is running, \
                             delete the lock file and rerun.",
                            max_wait.as_secs(),
                            path.display(),
                            seen.trim().replace('\n', ", ")
                        ));
                    }
                    if !told {
                        eprintln!(
                            "redlock-py interop: waiting for another process building the venv \
                             (lock {}: {})",
                            path.display(),
                            seen.trim().replace('\n', ", ")
                        );
                        told = true;
                    }
                    thread::sleep(Duration::from_millis(100));
                }
                Err(e) => {
                    return Err(format!(
                        "redlock-py interop: cannot create the lock file {}: {e}",
                        path.display()
                    ))
                }
            }
        }
    }
}

/// Why the lock file at `path` (with content `seen`) is stale, if it is.
fn stale(path: &Path, seen: &str) -> Option<String> {
    let modified = fs::metadata(path).ok()?.modified().ok()?;
    let age = SystemTime::now()
        .duration_since(modified)
        .unwrap_or_default();
    if age > STALE_AFTER {
        return Some(format!("not refreshed for {}s", age.as_secs()));
    }
    let field = |key: &str| {
        seen.lines()
            .find_map(|l| l.strip_prefix(key).map(str::trim))
            .map(str::to_owned)
    };
    let pid = field("pid ").and_then(|p| p.parse::<u32>().ok())?;
    if field("host ").as_deref() == Some(hostname().as_str()) && pid_alive(pid) == Some(false) {
        return Some(format!("its builder, pid {pid}, is gone"));
    }
    None
}

/// Refreshes the lock file's mtime every [`HEARTBEAT`] while it is still ours.
fn heartbeat(path: &Path, token: &str, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        thread::park_timeout(HEARTBEAT);
        if stop.load(Ordering::Acquire) {
            break;
        }
        if fs::read_to_string(path).is_ok_and(|now| now == token) {
            let _ = OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|f| f.set_modified(SystemTime::now()));
        }
    }
}

impl Drop for BuildLock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(beat) = self.heartbeat.take() {
            beat.thread().unpark();
            let _ = beat.join();
        }
        if fs::read_to_string(&self.path).is_ok_and(|now| now == self.token) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The setup itself, against throwaway target dirs: first use from nothing (PyPI), several
    //! callers at once, a half-built venv, and each missing piece failing with its fix.

    use super::*;
    use crate::support::{free_port, unique_temp_dir};
    use std::sync::Barrier;

    /// A temp dir removed on drop, also when the test panics.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(label: &str) -> TempDir {
            TempDir(unique_temp_dir(label))
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn write_script(path: &Path, body: &str) {
        fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// The PID of a process that has exited (and been reaped).
    fn dead_pid() -> u32 {
        let mut child = Command::new("true").spawn().expect("spawn `true`");
        let pid = child.id();
        child.wait().expect("wait for `true`");
        pid
    }

    /// Checks, without the code under test, that `ready` is the venv of `setup` and can run
    /// the driver's imports at the pins, and that it was published under its final name.
    #[track_caller]
    fn assert_working_venv(setup: &Setup, ready: &Ready) {
        let venv = setup.venv_dir();
        assert_eq!(ready.python, venv.join("bin/python"));
        let out = Command::new(&ready.python)
            .args([
                "-c",
                "from importlib.metadata import version\nimport redis, redlock\n\
                 print(version('redlock-py'), version('redis'), redlock.Redlock.__name__)",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", both(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{REDLOCK_PY_VERSION} {REDIS_PY_VERSION} Redlock")
        );
        assert!(
            ready.versions.starts_with(&format!(
                "redlock-py {REDLOCK_PY_VERSION}, redis {REDIS_PY_VERSION}, python "
            )),
            "{ready:?}"
        );
        let pip = fs::read_to_string(venv.join("bin/pip")).unwrap();
        let shebang = pip.lines().next().unwrap_or_default();
        assert!(
            shebang.starts_with(&format!("#!{}/bin/python", venv.display())),
            "bin/pip names the temporary build dir: {shebang}"
        );
    }

    #[test]
    fn concurrent_first_use_builds_one_working_venv_in_an_empty_target_dir() {
        let dir = TempDir::new("venv-first-use");
        // Not even created yet, as in a fresh clone.
        let setup = Setup::in_target_dir(dir.0.join("target"));
        let barrier = Barrier::new(3);
        let results: Vec<Result<Ready, String>> = thread::scope(|s| {
            let callers: Vec<_> = (0..3)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        prepare(&setup)
                    })
                })
                .collect();
            callers.into_iter().map(|c| c.join().unwrap()).collect()
        });
        let readies: Vec<Ready> = results
            .into_iter()
            .map(|r| r.unwrap_or_else(|e| panic!("{e}")))
            .collect();
        assert_eq!(
            readies.iter().filter(|r| r.built).count(),
            1,
            "exactly one caller builds, the others wait and use its venv: {readies:?}"
        );
        for ready in &readies {
            assert_working_venv(&setup, ready);
        }
        // No lock, no temporary or set-aside directory left behind.
        assert_eq!(names(&setup.target_dir), [VENV_NAME]);
        let again = prepare(&setup).unwrap_or_else(|e| panic!("{e}"));
        assert!(!again.built, "a ready venv is used as is: {again:?}");
    }

    #[test]
    fn a_half_built_venv_and_a_dead_builders_lock_are_replaced_not_used() {
        let dir = TempDir::new("venv-half-built");
        let setup = Setup::in_target_dir(&dir.0);
        let venv = setup.venv_dir();
        // What an interrupted in-place build leaves: an interpreter without the packages.
        fs::create_dir_all(venv.join("bin")).unwrap();
        fs::write(venv.join("pyvenv.cfg"), "home = /nowhere\n").unwrap();
        write_script(
            &venv.join("bin/python"),
            "echo \"ModuleNotFoundError: No module named 'redlock'\" >&2\nexit 1\n",
        );
        // A builder that died holding the lock (fresh mtime: only its PID tells it is gone),
        // and its temporary directory.
        let dead = dead_pid();
        fs::write(
            setup.lock_path(),
            format!("pid {dead}\nhost {}\nid 0-0\n", hostname()),
        )
        .unwrap();
        fs::create_dir_all(dir.0.join(format!("{VENV_NAME}.tmp-{dead}-0/bin"))).unwrap();

        let ready = prepare(&setup).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            ready.built,
            "the half-built venv must be rebuilt: {ready:?}"
        );
        assert_working_venv(&setup, &ready);
        assert_eq!(names(&dir.0), [VENV_NAME]);
        assert!(!prepare(&setup).unwrap_or_else(|e| panic!("{e}")).built);
    }

    #[test]
    fn a_missing_resplock_python_fails_with_what_to_do() {
        let dir = TempDir::new("venv-no-override");
        let mut setup = Setup::in_target_dir(&dir.0);
        setup.resplock_python = Some("/nonexistent/python3".into());
        let err = prepare(&setup).unwrap_err();
        for part in [
            "RESPLOCK_PYTHON=/nonexistent/python3 does not name an existing file",
            "Unset RESPLOCK_PYTHON to let the test build",
            "sudo apt-get install -y python3 python3-venv",
            "redlock-py==1.0.8 and redis==5.0.8",
        ] {
            assert!(err.contains(part), "missing {part:?} in:\n{err}");
        }
        assert!(
            !setup.venv_dir().exists(),
            "nothing is built for an override"
        );
    }

    #[test]
    fn a_resplock_python_without_redlock_fails_with_what_to_do() {
        let dir = TempDir::new("venv-bad-override");
        let python = dir.0.join("python");
        write_script(
            &python,
            "echo \"ModuleNotFoundError: No module named 'redlock'\" >&2\nexit 1\n",
        );
        let mut setup = Setup::in_target_dir(&dir.0);
        setup.resplock_python = Some(python.clone().into());
        let err = prepare(&setup).unwrap_err();
        let cannot_import = format!(
            "RESPLOCK_PYTHON={} cannot `import redlock, redis`",
            python.display()
        );
        for part in [
            cannot_import.as_str(),
            "-m pip install redlock-py==1.0.8 redis==5.0.8",
            "No module named 'redlock'",
        ] {
            assert!(err.contains(part), "missing {part:?} in:\n{err}");
        }
    }

    #[test]
    fn no_python3_on_path_fails_with_the_install_command() {
        let dir = TempDir::new("venv-no-python");
        let mut setup = Setup::in_target_dir(dir.0.join("target"));
        setup.path = Some(dir.0.join("empty-bin").into_os_string());
        let err = prepare(&setup).unwrap_err();
        for part in [
            "no `python3` on PATH",
            "sudo apt-get install -y python3 python3-venv",
            "RESPLOCK_PYTHON",
        ] {
            assert!(err.contains(part), "missing {part:?} in:\n{err}");
        }
        assert!(!setup.target_dir.exists());
    }

    #[test]
    fn a_python3_without_the_venv_module_fails_with_the_install_command() {
        let dir = TempDir::new("venv-no-venv-module");
        let bin = dir.0.join("bin");
        fs::create_dir_all(&bin).unwrap();
        // What Debian's python3 says without python3-venv.
        write_script(
            &bin.join("python3"),
            "echo 'The virtual environment was not created successfully because ensurepip is \
             not'\necho 'available.  On Debian/Ubuntu systems, you need to install the \
             python3-venv'\necho 'package using the following command.'\nexit 1\n",
        );
        let mut setup = Setup::in_target_dir(dir.0.join("target"));
        setup.path = Some(bin.into_os_string());
        let err = prepare(&setup).unwrap_err();
        for part in [
            "venv module (with ensurepip) is missing",
            "sudo apt-get install -y python3-venv",
            "RESPLOCK_PYTHON",
            "ensurepip is not",
        ] {
            assert!(err.contains(part), "missing {part:?} in:\n{err}");
        }
        assert_eq!(names(&setup.target_dir), Vec::<String>::new());
    }

    #[test]
    fn an_unreachable_package_index_fails_with_what_to_do() {
        let dir = TempDir::new("venv-offline");
        let mut setup = Setup::in_target_dir(&dir.0);
        // A closed loopback port as the only index; no other source of packages.
        let index = format!("http://127.0.0.1:{}/simple", free_port());
        setup.env = vec![
            ("PIP_CONFIG_FILE".into(), Some("/dev/null".into())),
            ("PIP_INDEX_URL".into(), Some(index.into())),
            ("PIP_EXTRA_INDEX_URL".into(), None),
            ("PIP_FIND_LINKS".into(), None),
            ("PIP_NO_INDEX".into(), None),
            // One retry (pip's default is 5, with backoff): enough to log the error.
            ("PIP_RETRIES".into(), Some("1".into())),
        ];
        let err = prepare(&setup).unwrap_err();
        for part in [
            "pip could not reach the package index",
            "redlock-py==1.0.8 redis==5.0.8",
            "HTTPS_PROXY",
            "RESPLOCK_PYTHON",
            // The tail of pip's output.
            "Connection refused",
        ] {
            assert!(err.contains(part), "missing {part:?} in:\n{err}");
        }
        assert_eq!(names(&dir.0), Vec::<String>::new(), "nothing left behind");
    }
}
