//! No password appears in any `Debug` or `Display` output of the crate, for any input: a
//! property test over generated node URLs, well-formed and garbled, each carrying a marker
//! password, checks every error and every `Debug` string the crate produces for them.
//!
//! Before this, `Builder`'s derived `Debug` printed the raw URLs, and a malformed URL with a
//! password but no host (`redis://:secret`) was echoed verbatim in its error.

use proptest::prelude::*;
use resplock::Redlock;

const MARKER: &str = "Zq7SecretMarkerZq7";

/// A password around the marker, with characters that URL parsers trip on.
fn password() -> impl Strategy<Value = String> {
    let junk = prop::sample::select(vec![
        "", "@", ":", "/", "?", "#", "%", "%2F", "%40", "&", "=", "[", "]", " ", "x", "0",
    ]);
    (junk.clone(), junk).prop_map(|(a, b)| format!("{a}{MARKER}{b}"))
}

fn scheme() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "redis://",
        "rediss://",
        "unix://",
        "REDIS://",
        "http://",
        "redis:/",
        "redis//",
        "redis:",
        "",
        "://",
    ])
}

fn host() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "127.0.0.1",
        "localhost",
        "[::1]",
        "::1",
        "",
        "h",
        "/tmp/redis.sock",
        "127.1",
    ])
}

fn tail() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "", ":6379", ":0", ":x", "/0", "/x", ":6380/2", "?db=1", "#frag", ":", "/",
    ])
}

/// URLs that carry the password where users put one: `user:password@host`, `:password@host`,
/// the same without the `@host` (a typo; then a password holding `@` would make what follows
/// it the host, by the URL grammar, so it holds none), or `password=` / `pass=` in a query.
fn url() -> impl Strategy<Value = String> {
    (
        scheme(),
        prop::option::of(prop::sample::select(vec!["u", "alice", ""])),
        password(),
        host(),
        tail(),
        0..5usize,
    )
        .prop_map(|(scheme, user, password, host, tail, form)| {
            let user = user.unwrap_or("");
            match form {
                0 => format!("{scheme}{user}:{password}@{host}{tail}"),
                1 => format!("{scheme}{user}:{}{tail}", password.replace('@', "")),
                2 => format!("{scheme}{host}{tail}?password={password}"),
                3 => format!("{scheme}{host}?db=0&pass={password}{tail}"),
                _ => format!("{scheme}:{password}@@{host}{tail}"),
            }
        })
}

fn assert_hidden(what: &str, text: &str, url: &str) {
    assert!(
        !text.contains(MARKER),
        "the password of {url:?} shows in {what}: {text}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn no_password_ever_shows(url in url(), other in url()) {
        let builder = Redlock::builder().nodes([url.as_str(), other.as_str()]);
        assert_hidden("Builder's Debug", &format!("{builder:?}"), &url);
        match builder.build() {
            Ok(dlm) => {
                assert_hidden("Redlock's Debug", &format!("{dlm:?}"), &url);
                for node in dlm.nodes() {
                    assert_hidden("NodeAddr's Debug", &format!("{node:?}"), &url);
                    assert_hidden("NodeAddr's Display", &node.to_string(), &url);
                }
            }
            Err(e) => {
                assert_hidden("the error's Display", &e.to_string(), &url);
                assert_hidden("the error's Debug", &format!("{e:?}"), &url);
            }
        }
        match resplock::url::NodeAddr::parse(&url) {
            Ok(addr) => {
                assert_hidden("NodeAddr's Debug", &format!("{addr:?}"), &url);
                assert_hidden("NodeAddr's Display", &addr.to_string(), &url);
            }
            Err(e) => {
                assert_hidden("the error's Display", &e.to_string(), &url);
                assert_hidden("the error's Debug", &format!("{e:?}"), &url);
            }
        }
    }
}

/// The cases the review named, spelled out.
#[test]
fn the_reported_leaks_are_closed() {
    for url in [
        format!("redis://:{MARKER}"),
        format!("redis://user:{MARKER}"),
        format!("redis://:{MARKER}/0"),
        format!(":{MARKER}"),
        format!("redis://:{MARKER}@"),
        format!("unix:///tmp/r.sock?password={MARKER}"),
    ] {
        let builder = Redlock::builder().nodes([url.as_str()]);
        assert_hidden("Builder's Debug", &format!("{builder:?}"), &url);
        if let Err(e) = builder.build() {
            assert_hidden("the error", &format!("{e} {e:?}"), &url);
        }
    }
}
