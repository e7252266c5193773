//! The command line, parsed by hand: five subcommands and a handful of long options.
//!
//! Contract:
//! - Options are long (`--ttl 30s` or `--ttl=30s`); `-h`/`--help` and `-V`/`--version` also
//!   have short forms. `--nodes` and `--fencing` are accepted before the subcommand and among
//!   its options. Options may follow RESOURCE; `--` ends them.
//! - `run` needs `--` between RESOURCE and CMD, so CMD's own options are never read as ours.
//! - A malformed command line (unknown option or subcommand, missing argument or `--`) is a
//!   usage error ([`crate::USAGE`]); a well-formed option with a value that cannot be used (a
//!   bad duration) is a configuration error ([`crate::CONFIG`]). Every message is one line that
//!   says what to fix. Nothing here does I/O or reads the environment.

use std::ffi::{OsStr, OsString};
use std::time::Duration;

use crate::Failure;

/// How long to wait for a lock someone else holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// `--no-wait`: one attempt.
    No,
    /// `--wait D`: keep trying until D has passed (`--wait 0s` is one attempt).
    Within(Duration),
    /// The default: until acquired, like `flock` and `etcdctl lock`.
    Forever,
}

/// Options every subcommand takes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Common {
    /// `--nodes URLS` as given (comma-separated); `None` falls back to `RESPLOCK_NODES`.
    pub nodes: Option<String>,
    /// `--fencing`.
    pub fencing: bool,
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Print this text on stdout and exit 0.
    Help(&'static str),
    /// Print the version and exit 0.
    Version,
    /// `run`.
    Run {
        common: Common,
        resource: OsString,
        ttl: Duration,
        wait: Wait,
        max_hold: Option<Duration>,
        kill_grace: Duration,
        program: OsString,
        args: Vec<OsString>,
    },
    /// `lock`.
    Lock {
        common: Common,
        resource: OsString,
        ttl: Duration,
        wait: Wait,
    },
    /// `extend`.
    Extend {
        common: Common,
        resource: OsString,
        value: OsString,
        ttl: Duration,
    },
    /// `release`.
    Release {
        common: Common,
        resource: OsString,
        value: OsString,
    },
    /// `inspect`.
    Inspect { common: Common, resource: OsString },
}

/// Default `--ttl`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// Default `--kill-grace`.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(10);

/// The options one subcommand accepts, besides `--nodes`, `--fencing` and `--help`.
const RUN_OPTIONS: &[&str] = &["--ttl", "--wait", "--no-wait", "--max-hold", "--kill-grace"];
const LOCK_OPTIONS: &[&str] = &["--ttl", "--wait", "--no-wait"];
const EXTEND_OPTIONS: &[&str] = &["--ttl"];

/// Parses the arguments after the program name.
pub fn parse(argv: Vec<OsString>) -> Result<Command, Failure> {
    let mut argv = argv.into_iter();
    let mut common = Common::default();
    let name = loop {
        let Some(arg) = argv.next() else {
            return Err(usage(
                "missing subcommand: run, lock, extend, release or inspect",
                "",
            ));
        };
        let text = arg.to_str().unwrap_or("");
        match text {
            "-h" | "--help" => return Ok(Command::Help(HELP)),
            "-V" | "--version" => return Ok(Command::Version),
            _ if text.starts_with('-') => {
                let (flag, inline) = split_flag(text);
                if !take_common(flag, inline, &mut argv, &mut common, "")? {
                    return Err(usage(&format!("unknown option {flag}"), ""));
                }
            }
            _ => break arg,
        }
    };
    let name = name.to_string_lossy().into_owned();
    let (allowed, help) = match name.as_str() {
        "run" => (RUN_OPTIONS, RUN_HELP),
        "lock" => (LOCK_OPTIONS, LOCK_HELP),
        "extend" => (EXTEND_OPTIONS, EXTEND_HELP),
        "release" => (&[][..], RELEASE_HELP),
        "inspect" => (&[][..], INSPECT_HELP),
        "help" => return Ok(Command::Help(HELP)),
        other => {
            return Err(usage(
                &format!(
                    "unknown subcommand {other:?}: expected run, lock, extend, release or inspect"
                ),
                "",
            ))
        }
    };
    let mut parsed = Parsed::default();
    let mut after_dashes = None;
    while let Some(arg) = argv.next() {
        if arg == "--" {
            after_dashes = Some(argv.by_ref().collect::<Vec<_>>());
            break;
        }
        let text = arg.to_str().unwrap_or("");
        if text == "-h" || text == "--help" {
            return Ok(Command::Help(help));
        }
        if !text.starts_with('-') || text == "-" {
            parsed.positional.push(arg);
            continue;
        }
        let (flag, inline) = split_flag(text);
        if take_common(flag, inline, &mut argv, &mut common, &name)? {
            continue;
        }
        if !allowed.contains(&flag) {
            return Err(usage(&format!("unknown option {flag}"), &name));
        }
        if flag == "--no-wait" {
            if inline.is_some() {
                return Err(usage("--no-wait takes no value", &name));
            }
            parsed.no_wait = true;
            continue;
        }
        let value = option_value(flag, inline, &mut argv, &name)?;
        let duration = parse_duration(&value)
            .map_err(|why| Failure::config(format!("{flag} {value:?}: {why}")))?;
        match flag {
            "--ttl" => parsed.ttl = Some(duration),
            "--wait" => parsed.wait = Some(duration),
            "--max-hold" => parsed.max_hold = Some(duration),
            _ => parsed.kill_grace = Some(duration),
        }
    }
    parsed.build(&name, common, after_dashes)
}

/// What the subcommand loop collected.
#[derive(Default)]
struct Parsed {
    positional: Vec<OsString>,
    ttl: Option<Duration>,
    wait: Option<Duration>,
    no_wait: bool,
    max_hold: Option<Duration>,
    kill_grace: Option<Duration>,
}

impl Parsed {
    fn build(
        self,
        name: &str,
        common: Common,
        after_dashes: Option<Vec<OsString>>,
    ) -> Result<Command, Failure> {
        let ttl = self.ttl.unwrap_or(DEFAULT_TTL);
        if ttl.is_zero() {
            return Err(Failure::config(
                "--ttl must be longer than 0s, e.g. --ttl 30s",
            ));
        }
        if self.max_hold.is_some_and(|d| d.is_zero()) {
            return Err(Failure::config(
                "--max-hold must be longer than 0s; leave it out for no cap",
            ));
        }
        let wait = match (self.wait, self.no_wait) {
            (Some(_), true) => {
                return Err(usage(
                    "--wait and --no-wait exclude each other: give one",
                    name,
                ))
            }
            (Some(d), false) => Wait::Within(d),
            (None, true) => Wait::No,
            (None, false) => Wait::Forever,
        };
        let mut positional = self.positional;
        if name == "run" {
            let Some(cmd) = after_dashes else {
                return Err(if positional.len() > 1 {
                    usage("missing `--` between RESOURCE and CMD", name)
                } else {
                    usage("missing `-- CMD [ARGS...]` after RESOURCE", name)
                });
            };
            let resource = exactly(positional, &["RESOURCE"], name)?.remove(0);
            let mut cmd = cmd.into_iter();
            let Some(program) = cmd.next() else {
                return Err(usage("missing CMD after `--`", name));
            };
            return Ok(Command::Run {
                common,
                resource,
                ttl,
                wait,
                max_hold: self.max_hold,
                kill_grace: self.kill_grace.unwrap_or(DEFAULT_KILL_GRACE),
                program,
                args: cmd.collect(),
            });
        }
        positional.extend(after_dashes.unwrap_or_default());
        Ok(match name {
            "lock" => Command::Lock {
                common,
                resource: exactly(positional, &["RESOURCE"], name)?.remove(0),
                ttl,
                wait,
            },
            "extend" => {
                let mut p = exactly(positional, &["RESOURCE", "VALUE"], name)?;
                let value = p.remove(1);
                Command::Extend {
                    common,
                    resource: p.remove(0),
                    value,
                    ttl,
                }
            }
            "release" => {
                let mut p = exactly(positional, &["RESOURCE", "VALUE"], name)?;
                let value = p.remove(1);
                Command::Release {
                    common,
                    resource: p.remove(0),
                    value,
                }
            }
            _ => Command::Inspect {
                common,
                resource: exactly(positional, &["RESOURCE"], name)?.remove(0),
            },
        })
    }
}

/// Exactly `names.len()` non-empty positional arguments, or a usage error naming the first
/// missing one or the first extra one.
fn exactly(got: Vec<OsString>, names: &[&str], sub: &str) -> Result<Vec<OsString>, Failure> {
    if let Some(missing) = names.get(got.len()) {
        return Err(usage(&format!("missing {missing}"), sub));
    }
    if let Some(extra) = got.get(names.len()) {
        return Err(usage(&format!("unexpected argument {extra:?}"), sub));
    }
    if let Some((name, _)) = names.iter().zip(&got).find(|(_, v)| v.is_empty()) {
        return Err(usage(&format!("{name} must not be empty"), sub));
    }
    Ok(got)
}

/// Handles `--nodes` and `--fencing`; false when `flag` is neither.
fn take_common(
    flag: &str,
    inline: Option<&str>,
    argv: &mut impl Iterator<Item = OsString>,
    common: &mut Common,
    sub: &str,
) -> Result<bool, Failure> {
    match flag {
        "--nodes" => {
            common.nodes = Some(option_value(flag, inline, argv, sub)?);
            Ok(true)
        }
        "--fencing" if inline.is_none() => {
            common.fencing = true;
            Ok(true)
        }
        "--fencing" => Err(usage("--fencing takes no value", sub)),
        _ => Ok(false),
    }
}

/// `--flag=value` into `("--flag", Some("value"))`.
fn split_flag(text: &str) -> (&str, Option<&str>) {
    match text.split_once('=') {
        Some((flag, value)) if flag.starts_with("--") => (flag, Some(value)),
        _ => (text, None),
    }
}

/// The value of an option: inline after `=`, else the next argument (UTF-8).
fn option_value(
    flag: &str,
    inline: Option<&str>,
    argv: &mut impl Iterator<Item = OsString>,
    sub: &str,
) -> Result<String, Failure> {
    if let Some(value) = inline {
        return Ok(value.to_owned());
    }
    let example = if flag == "--nodes" {
        "redis://host:6379,..."
    } else {
        "30s"
    };
    match argv.next() {
        Some(v) if v != "--" => v
            .into_string()
            .map_err(|v| Failure::config(format!("{flag} {v:?}: not valid UTF-8"))),
        _ => Err(usage(
            &format!("{flag} needs a value, e.g. {flag} {example}"),
            sub,
        )),
    }
}

/// A usage error, with where to read more.
fn usage(what: &str, sub: &str) -> Failure {
    let (prefix, help) = if sub.is_empty() {
        (String::new(), "resplock --help".to_owned())
    } else {
        (format!("{sub}: "), format!("resplock {sub} --help"))
    };
    Failure::usage(format!("{prefix}{what} (see `{help}`)"))
}

/// Parses a duration as humans write it: a number and a unit (`ms`, `s`, `m`, `h`), or several
/// in a row (`1h30m`). Fractions are allowed (`1.5s`) when the total is a whole number of
/// milliseconds. The error says what to write instead.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const FORMS: &str = "write a number and a unit: 500ms, 30s, 5m, 2h or 1h30m";
    if text.is_empty() {
        return Err(format!("empty duration: {FORMS}"));
    }
    if text.starts_with('-') {
        return Err(format!("must not be negative: {FORMS}"));
    }
    let mut rest = text.as_bytes();
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let (int, tail) = rest.split_at(int_len);
        let (frac, tail) = match tail.split_first() {
            Some((b'.', after)) => {
                let n = after.iter().take_while(|b| b.is_ascii_digit()).count();
                after.split_at(n)
            }
            _ => (&[][..], tail),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(format!("expected a number: {FORMS}"));
        }
        let unit_len = tail.iter().take_while(|b| b.is_ascii_alphabetic()).count();
        let (unit, tail) = tail.split_at(unit_len);
        let nanos_per_unit: u128 = match unit {
            b"ms" => 1_000_000,
            b"s" => 1_000_000_000,
            b"m" => 60_000_000_000,
            b"h" => 3_600_000_000_000,
            b"" => return Err(format!("missing unit: {FORMS}")),
            _ => return Err(format!("unknown unit: {FORMS}")),
        };
        if int.len() > 12 || frac.len() > 9 {
            return Err("too many digits".to_owned());
        }
        let int_value = digits(int);
        let scale = 10u128.pow(u32::try_from(frac.len()).unwrap_or(9));
        let frac_nanos = digits(frac) * nanos_per_unit;
        if frac_nanos % scale != 0 {
            return Err("finer than a millisecond: durations are whole milliseconds".to_owned());
        }
        total += int_value * nanos_per_unit + frac_nanos / scale;
        rest = tail;
    }
    if total % 1_000_000 != 0 {
        return Err("finer than a millisecond: durations are whole milliseconds".to_owned());
    }
    let millis = u64::try_from(total / 1_000_000).map_err(|_| "too long".to_owned())?;
    Ok(Duration::from_millis(millis))
}

/// The value of at most 12 ASCII digits.
fn digits(ascii: &[u8]) -> u128 {
    ascii
        .iter()
        .fold(0, |n, d| n * 10 + u128::from(d.saturating_sub(b'0')))
}

/// Writes a duration the way [`parse_duration`] reads it back, at millisecond precision:
/// `1h30m`, `29.994s`, `500ms`, `0s`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || (frac > 0 && ms >= 1000) {
        out.push_str(&format!("{s}"));
        if frac > 0 {
            out.push_str(&format!(".{frac:03}"));
        }
        out.push('s');
    } else if frac > 0 {
        out.push_str(&format!("{frac}ms"));
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// The resource or value as bytes (the Redis key is the argument verbatim).
pub fn bytes(arg: &OsStr) -> &[u8] {
    use std::os::unix::ffi::OsStrExt;
    arg.as_bytes()
}

const HELP: &str = "\
resplock: run a command while holding a Redlock lock over N independent Redis masters,
or take, extend, release and inspect such a lock from a shell script.

Usage:
  resplock run     [OPTIONS] RESOURCE -- CMD [ARGS...]
  resplock lock    [OPTIONS] RESOURCE            prints VALUE (and TOKEN with --fencing)
  resplock extend  [OPTIONS] RESOURCE VALUE
  resplock release [OPTIONS] RESOURCE VALUE
  resplock inspect [OPTIONS] RESOURCE            holder and remaining ttl, or free
  resplock SUBCOMMAND --help
  resplock --version

Options of every subcommand (also accepted before it):
  --nodes URLS     comma-separated node URLs, redis://[[user]:password@]host[:port][/db];
                   default: the RESPLOCK_NODES environment variable (prefer it when URLs
                   hold passwords: other users can read command lines)
  --fencing        use fencing tokens (a number that grows with every grant)

Durations are written as 500ms, 30s, 5m, 2h, or combined: 1h30m.
RESOURCE is the Redis key itself, so other Redlock clients using the same name exclude
each other. VALUE is what `resplock lock` printed.

Exit status:
  0        success; for run: CMD exited 0
  1-255    run: CMD's own exit status, 128+N when CMD was killed by signal N
  64       usage: unknown option or subcommand, missing argument, no `--` before CMD
  69       unavailable: too few nodes answered to decide (they are down, unreachable,
           or refused the command); nothing was run
  71       the operating system failed (random generator, signal handlers, waiting for CMD)
  74       lock: VALUE could not be written to stdout (the lock was released)
  75       not acquired: another owner held the lock until --wait ran out (or at once
           with --no-wait); nothing was run
  78       configuration: bad node URL, no nodes, bad duration or ttl, a node rejecting
           our credentials, an option this library version does not support yet
  79       lock lost. run: it was taken, it expired, or --max-hold was reached, and CMD
           was terminated (SIGTERM, then SIGKILL after --kill-grace), or the release
           found it gone when CMD exited. extend, release: VALUE no longer holds the
           lock (it expired or was taken)
  126      run: CMD could not be started
  127      run: CMD was not found
  128+N    run, lock: resplock got signal N while waiting for the lock; nothing was run
Whenever the status is resplock's own rather than CMD's, stderr has a line starting
`resplock: ` that says why.
";

const RUN_HELP: &str = "\
resplock run: run CMD while holding the lock on RESOURCE.

Usage: resplock run [--ttl 30s] [--wait 10s | --no-wait] [--max-hold 2h] [--kill-grace 10s]
                    [--nodes URLS] [--fencing] RESOURCE -- CMD [ARGS...]

Takes the lock (waiting until it is free unless --wait or --no-wait says otherwise), runs
CMD with RESPLOCK_RESOURCE, RESPLOCK_VALUE (and RESPLOCK_TOKEN with --fencing) in its
environment, renews the lock every ttl/3 while CMD runs, and releases it when CMD exits.

  --ttl D          lock time to live; the most a crashed resplock holds it (default 30s)
  --wait D         give up after D if the lock stays taken (exit 75); default: wait forever
  --no-wait        one attempt, exit 75 at once if the lock is taken
  --max-hold D     after D, terminate CMD as if the lock were lost; renewal goes on through
                   --kill-grace, then stops, so the lock never outlives D + grace + ttl
  --kill-grace D   time between SIGTERM and SIGKILL when the lock is lost (default 10s)
  --nodes URLS     node URLs, comma-separated (default: $RESPLOCK_NODES)
  --fencing        use fencing tokens (a number that grows with every grant)

Lost lock (taken, expired, --max-hold reached): CMD gets SIGTERM, then SIGKILL after
--kill-grace; the reason is written to stderr and resplock exits 79.
SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to resplock are passed on to CMD, and the lock
is released once CMD exits. Those a terminal sends (Ctrl-C, Ctrl-\\, hangup) already reach
CMD, which shares resplock's process group, and are not sent twice. Signals go to CMD
only, not to its children: a shell script should `exec` its last command, or trap and
pass them on. While still waiting for the lock, these signals end the wait at once
(exit 128+N, nothing run). A resplock killed with SIGKILL leaves a lock that expires
within one ttl.

Exit status: CMD's own (128+N when it was killed by signal N); 64 usage; 69 nodes
unavailable; 71 system error; 75 not acquired; 78 configuration; 79 lock lost, CMD
terminated; 126 CMD could not be started; 127 CMD not found; 128+N interrupted by
signal N while waiting. See `resplock --help`.
";

const LOCK_HELP: &str = "\
resplock lock: take the lock on RESOURCE and keep it after exiting, for a shell script.

Usage: resplock lock [--ttl 30s] [--wait 10s | --no-wait] [--nodes URLS] [--fencing] RESOURCE

Prints VALUE on the first line of stdout (with --fencing: VALUE TOKEN). The lock expires
after --ttl unless renewed with `resplock extend`; give it back with `resplock release`:

  v=$(resplock lock --ttl 5m job) || exit
  ... work, shorter than 5m or renewed ...
  resplock release job \"$v\"

  --ttl D          lock time to live (default 30s)
  --wait D         give up after D if the lock stays taken (exit 75); default: wait forever
  --no-wait        one attempt, exit 75 at once if the lock is taken
  --nodes URLS     node URLs, comma-separated (default: $RESPLOCK_NODES)
  --fencing        use fencing tokens (a number that grows with every grant)

Exit status: 0 acquired; 64 usage; 69 nodes unavailable; 71 system error; 74 stdout
not writable (released); 75 not acquired; 78 configuration; 128+N interrupted by signal
N while waiting. See `resplock --help`.
";

const EXTEND_HELP: &str = "\
resplock extend: reset the ttl of the lock on RESOURCE that VALUE holds.

Usage: resplock extend [--ttl 30s] [--nodes URLS] RESOURCE VALUE

The new ttl counts from now (it replaces the old one, it is not added to it). A lock
that already expired is never re-created.

  --ttl D          new time to live (default 30s)
  --nodes URLS     node URLs, comma-separated (default: $RESPLOCK_NODES)

Exit status: 0 extended; 64 usage; 69 too few nodes answered; 78 configuration; 79 VALUE
no longer holds the lock. See `resplock --help`.
";

const RELEASE_HELP: &str = "\
resplock release: give back the lock on RESOURCE that VALUE holds.

Usage: resplock release [--nodes URLS] RESOURCE VALUE

Deletes the key only on nodes where it still holds VALUE.

  --nodes URLS     node URLs, comma-separated (default: $RESPLOCK_NODES)

Exit status: 0 released; 64 usage; 69 too few nodes answered to tell (the lock expires
within its ttl anyway); 78 configuration; 79 VALUE no longer held the lock (it had expired
or was taken). See `resplock --help`.
";

const INSPECT_HELP: &str = "\
resplock inspect: show who holds the lock on RESOURCE.

Usage: resplock inspect [--nodes URLS] RESOURCE

Prints `held VALUE REMAINING` (for example `held 3f0c... 12.500s`) when a quorum of
nodes holds one value, else `free`. REMAINING is the shortest ttl left among those nodes
(`-` for a key without expiry, which no Redlock client set). Read-only, and advisory: the
lock may change hands right after.

  --nodes URLS     node URLs, comma-separated (default: $RESPLOCK_NODES)

Exit status: 0 shown (held or free); 64 usage; 69 fewer than a quorum of nodes answered;
78 configuration. See `resplock --help`.
";

#[cfg(test)]
#[path = "args_tests.rs"]
mod tests;
