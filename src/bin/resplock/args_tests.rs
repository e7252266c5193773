//! Command lines, parsed: every subcommand, every option spelling, every usage error.

use super::*;

fn ms(n: u64) -> Result<Duration, String> {
    Ok(Duration::from_millis(n))
}

#[test]
fn durations_as_humans_write_them() {
    assert_eq!(parse_duration("500ms"), ms(500));
    assert_eq!(parse_duration("30s"), ms(30_000));
    assert_eq!(parse_duration("5m"), ms(300_000));
    assert_eq!(parse_duration("2h"), ms(7_200_000));
    assert_eq!(parse_duration("1h30m"), ms(5_400_000));
    assert_eq!(parse_duration("1.5s"), ms(1500));
    assert_eq!(parse_duration("0s"), ms(0));
    assert_eq!(parse_duration("0.001s"), ms(1));
}

#[test]
fn bad_durations_say_what_to_write() {
    for bad in [
        "",
        "30",
        "30x",
        "s",
        "-1s",
        "1.5ms",
        "0.0001s",
        " 1s",
        "1s ",
        "1e3s",
        "1..5s",
        ".s",
        "9999999999999h",
    ] {
        let err = parse_duration(bad).expect_err(bad);
        assert!(!err.is_empty() && !err.contains('\n'), "{bad:?}: {err}");
    }
    assert!(parse_duration("30")
        .expect_err("no unit")
        .contains("500ms, 30s"));
}

#[test]
fn durations_print_back() {
    for (ms, text) in [
        (0, "0s"),
        (500, "500ms"),
        (1500, "1.500s"),
        (30_000, "30s"),
        (5_400_000, "1h30m"),
        (3_601_000, "1h1s"),
    ] {
        let d = Duration::from_millis(ms);
        assert_eq!(format_duration(d), text);
        assert_eq!(parse_duration(text), Ok(d));
    }
}

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

#[test]
fn run_with_every_option() {
    let parsed = parse(args(&[
        "--nodes",
        "redis://a",
        "run",
        "--ttl=5s",
        "--wait",
        "1m",
        "job",
        "--max-hold",
        "2h",
        "--kill-grace",
        "0s",
        "--fencing",
        "--",
        "sh",
        "-c",
        "--ttl",
    ]));
    assert_eq!(
        parsed,
        Ok(Command::Run {
            common: Common {
                nodes: Some("redis://a".into()),
                fencing: true
            },
            resource: "job".into(),
            ttl: Duration::from_secs(5),
            wait: Wait::Within(Duration::from_secs(60)),
            max_hold: Some(Duration::from_secs(7200)),
            kill_grace: Duration::ZERO,
            program: "sh".into(),
            args: args(&["-c", "--ttl"]),
        })
    );
}

#[test]
fn statuses_of_bad_command_lines() {
    let status = |list: &[&str]| parse(args(list)).map(|_| ()).map_err(|f| f.status);
    let usage = Err(crate::USAGE);
    let config = Err(crate::CONFIG);
    assert_eq!(status(&[]), usage);
    assert_eq!(status(&["frob"]), usage);
    assert_eq!(status(&["--frob", "run"]), usage);
    assert_eq!(status(&["run", "job", "true"]), usage);
    assert_eq!(status(&["run", "job"]), usage);
    assert_eq!(status(&["run", "job", "--"]), usage);
    assert_eq!(status(&["run", "--", "true"]), usage);
    assert_eq!(status(&["run", "a", "b", "--", "true"]), usage);
    assert_eq!(status(&["run", "--ttl"]), usage);
    assert_eq!(status(&["lock", "--wait", "1s", "--no-wait", "j"]), usage);
    assert_eq!(status(&["lock", "--max-hold", "1s", "j"]), usage);
    assert_eq!(status(&["release", "j"]), usage);
    assert_eq!(status(&["release", "j", "v", "w"]), usage);
    assert_eq!(status(&["lock", ""]), usage);
    assert_eq!(status(&["run", "--ttl", "30", "j", "--", "true"]), config);
    assert_eq!(status(&["run", "--ttl", "0s", "j", "--", "true"]), config);
    assert_eq!(
        status(&["run", "--max-hold", "0s", "j", "--", "true"]),
        config
    );
    assert_eq!(status(&["lock", "--wait=soon", "j"]), config);
    assert_eq!(status(&["lock", "--no-wait", "j"]), Ok(()));
    assert_eq!(status(&["inspect", "--", "-j"]), Ok(()));
}
