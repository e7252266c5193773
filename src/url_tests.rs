//! Node URL parsing: every documented form, every refusal, host canonicalization.

use super::*;

fn ok(url: &str) -> NodeAddr {
    match NodeAddr::parse(url) {
        Ok(addr) => addr,
        Err(e) => panic!("{url}: {e}"),
    }
}

fn reason(url: &str) -> UrlRule {
    match NodeAddr::parse(url) {
        Err(Error::InvalidUrl { reason, url: shown }) => {
            assert!(!shown.contains("secret"), "password leaked: {shown}");
            reason
        }
        other => panic!("{url}: expected an invalid url, got {other:?}"),
    }
}

#[test]
fn parses_every_documented_form() {
    let a = ok("redis://127.0.0.1:7001");
    assert_eq!(
        (a.host(), a.port(), a.db(), a.password()),
        ("127.0.0.1", 7001, 0, None)
    );
    let a = ok("redis://Example.COM");
    assert_eq!((a.host(), a.port()), ("example.com", DEFAULT_PORT));
    let a = ok("redis://:p%40ss@host:1/3");
    assert_eq!(
        (a.user(), a.password(), a.db()),
        (None, Some(&b"p@ss"[..]), 3)
    );
    let a = ok("redis://alice:secret@[::1]:7002/0");
    assert_eq!(
        (a.host(), a.port(), a.user()),
        ("::1", 7002, Some(&b"alice"[..]))
    );
    assert_eq!(a.to_string(), "[::1]:7002");
    assert!(!format!("{a:?}").contains("secret"));
    assert_eq!(ok("redis://[::1]").port(), DEFAULT_PORT);
    assert_eq!(ok("REDIS://h:2/").db(), 0);
}

#[test]
fn refuses_what_it_does_not_understand() {
    assert_eq!(reason("127.0.0.1:7001"), "missing redis:// scheme");
    assert_eq!(
        reason("http://h"),
        "scheme must be redis://, rediss:// or unix://"
    );
    #[cfg(not(feature = "tls"))]
    assert_eq!(reason("rediss://h"), UrlRule::TlsUnsupported);
    #[cfg(feature = "tls")]
    assert_eq!(reason("rediss://h?db=1"), UrlRule::QueryOrFragment);
    assert_eq!(reason("redis://"), "missing host");
    assert_eq!(reason("redis://h:0"), "port out of range");
    assert_eq!(reason("redis://h:65536"), "port out of range");
    assert_eq!(reason("redis://h:"), "invalid port");
    assert_eq!(reason("redis://h:x1"), "invalid port");
    assert_eq!(
        reason("redis://::1:6379"),
        "ipv6 addresses must be in brackets"
    );
    assert_eq!(reason("redis://[::1"), "unclosed [ in ipv6 address");
    assert_eq!(reason("redis://[nope]:1"), "invalid ipv6 address");
    assert_eq!(reason("redis://h/x"), "path must be a database number");
    assert_eq!(
        reason("redis://h/99999999999"),
        "path must be a database number"
    );
    assert_eq!(
        reason("redis://h/4294967295"),
        "database index out of range"
    );
    assert_eq!(
        reason("redis://h?db=1"),
        "query strings and fragments are not supported"
    );
    assert_eq!(
        reason("redis://secret@h"),
        "credentials must be user:password or :password"
    );
    assert_eq!(reason("redis://u:secret%zz@h"), "bad percent-encoding");
    assert_eq!(reason("redis://u:@h"), "empty password");
    assert_eq!(reason("redis://h :1"), "whitespace or control character");
    assert_eq!(reason("redis:/:secret@h"), "missing redis:// scheme");
    assert_eq!(reason(":secret@h"), "missing redis:// scheme");
    assert_eq!(reason("redis://:se/cret@h"), "missing host");
}

#[test]
#[cfg(feature = "tls")]
fn rediss_takes_the_redis_grammar_and_a_valid_server_name() {
    let a = ok("rediss://alice:secret@Cache.Example.com:6380/2");
    assert!(a.is_tls());
    assert_eq!(
        (a.host(), a.port(), a.db(), a.user()),
        ("cache.example.com", 6380, 2, Some(&b"alice"[..]))
    );
    assert_eq!(a.to_string(), "cache.example.com:6380");
    assert!(!format!("{a:?}").contains("secret"));
    assert_eq!(ok("rediss://[::1]").port(), DEFAULT_PORT);
    assert!(!ok("redis://h").is_tls());
    assert_eq!(reason("rediss://a..b"), UrlRule::TlsServerName);
    assert_eq!(reason("rediss://h#x"), UrlRule::QueryOrFragment);
    // One server: TLS or not, the same host and port.
    assert!(ok("rediss://h:1").same_server(&ok("redis://h:1")));
    assert_ne!(ok("rediss://h:1"), ok("redis://h:1"));
}

#[test]
#[cfg(unix)]
fn unix_urls_take_a_path_and_redis_py_or_redis_rs_parameters() {
    let a = ok("unix:///run/redis/redis.sock");
    assert_eq!(a.unix_path(), Some(Path::new("/run/redis/redis.sock")));
    assert_eq!((a.host(), a.port(), a.db(), a.password()), ("", 0, 0, None));
    assert_eq!(a.to_string(), "/run/redis/redis.sock");
    let a = ok("UNIX:///tmp/r%20s.sock?db=3&password=p%40ss+word");
    assert_eq!(a.unix_path(), Some(Path::new("/tmp/r s.sock")));
    assert_eq!((a.db(), a.password()), (3, Some(&b"p@ss word"[..])));
    let a = ok("unix:///tmp/r.sock?pass=secret&user=alice");
    assert_eq!(
        (a.user(), a.password()),
        (Some(&b"alice"[..]), Some(&b"secret"[..]))
    );
    let a = ok("unix://alice:secret@/tmp/r.sock?db=0");
    assert_eq!(
        (a.user(), a.password(), a.db()),
        (Some(&b"alice"[..]), Some(&b"secret"[..]), 0)
    );
    assert_eq!(ok("unix://:secret@/tmp/r.sock").user(), None);
    assert_eq!(ok("unix:///tmp/r.sock?").db(), 0);
    assert!(!format!("{a:?}").contains("secret"));
    assert!(!a.is_tls());

    assert_eq!(reason("unix://tmp/r.sock"), UrlRule::UnixHost);
    assert_eq!(reason("unix://localhost/tmp/r.sock"), UrlRule::UnixHost);
    assert_eq!(reason("unix://"), UrlRule::UnixPath);
    assert_eq!(reason("unix:///tmp/a%00b"), UrlRule::UnixPath);
    let long = format!("unix:///{}", "a".repeat(200));
    assert_eq!(reason(&long), UrlRule::UnixPathTooLong);
    assert_eq!(reason("unix:///tmp/r.sock?db=x"), UrlRule::BadDbParameter);
    assert_eq!(reason("unix:///tmp/r.sock?db="), UrlRule::BadDbParameter);
    assert_eq!(
        reason("unix:///tmp/r.sock?db=2147483648"),
        UrlRule::DatabaseRange
    );
    assert_eq!(
        reason("unix:///tmp/r.sock?db=1&db=2"),
        UrlRule::RepeatedParameter
    );
    assert_eq!(
        reason("unix:///tmp/r.sock?password=secret&pass=secret"),
        UrlRule::RepeatedParameter
    );
    assert_eq!(
        reason("unix://:secret@/tmp/r.sock?password=secret"),
        UrlRule::RepeatedParameter
    );
    assert_eq!(
        reason("unix:///tmp/r.sock?timeout=1"),
        UrlRule::UnknownParameter
    );
    assert_eq!(
        reason("unix:///tmp/r.sock?secret"),
        UrlRule::UnknownParameter
    );
    assert_eq!(
        reason("unix:///tmp/r.sock?password="),
        UrlRule::EmptyPassword
    );
    assert_eq!(
        reason("unix:///tmp/r.sock?user=alice"),
        UrlRule::Credentials
    );
    assert_eq!(
        reason("unix:///tmp/r.sock?password=secret%zz"),
        UrlRule::PercentEncoding
    );
    assert_eq!(reason("unix:///tmp/r.sock#secret"), UrlRule::Fragment);
    assert_eq!(reason("unix:///tmp/r .sock"), UrlRule::Whitespace);
}

#[test]
#[cfg(unix)]
fn unix_same_server_is_the_same_path() {
    assert!(ok("unix:///tmp/r.sock?db=1").same_server(&ok("unix:///tmp//./r.sock")));
    assert!(!ok("unix:///tmp/r.sock").same_server(&ok("unix:///tmp/s.sock")));
    assert!(!ok("unix:///tmp/r.sock").same_server(&ok("redis://h")));
    assert!(!ok("redis://h").same_server(&ok("unix:///tmp/r.sock")));
}

#[test]
fn every_inet_aton_spelling_of_an_address_is_one_host() {
    for spelling in [
        "127.0.0.1",
        "127.1",
        "127.0.1",
        "0x7f.0.0.1",
        "0X7F.1",
        "0177.0.0.1",
        "017700000001",
        "2130706433",
        "0x7f000001",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
    ] {
        let url = format!("redis://{spelling}:7001");
        assert_eq!(ok(&url).host(), "127.0.0.1", "{spelling}");
    }
    assert_eq!(
        inet_aton("1.2.3.4"),
        Some(std::net::Ipv4Addr::new(1, 2, 3, 4))
    );
    assert_eq!(inet_aton("0x"), Some(std::net::Ipv4Addr::new(0, 0, 0, 0)));
    for name in [
        "256.1.1.1",
        "1.2.3.4.5",
        "08.1",
        "1.0x100.1",
        "4294967296",
        "a.b",
        "",
        "1..2",
    ] {
        assert_eq!(inet_aton(name), None, "{name}");
    }
    assert_eq!(ok("redis://Example.COM.:1").host(), "example.com");
    assert!(ok("redis://127.1:5").same_server(&ok("redis://2130706433:5/3")));
}

#[test]
fn same_server_ignores_database_and_credentials() {
    assert!(ok("redis://H:1/2").same_server(&ok("redis://:x@h:1/0")));
    assert!(ok("redis://[::1]:1").same_server(&ok("redis://[0:0::1]:1")));
    assert!(ok("redis://127.0.0.1:1").same_server(&ok("redis://[::ffff:127.0.0.1]:1")));
    assert_eq!(ok("redis://[::FFFF:7F00:1]:1").to_string(), "127.0.0.1:1");
    assert!(!ok("redis://h:1").same_server(&ok("redis://h:2")));
}
