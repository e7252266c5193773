//! Node URLs: `redis://[[user]:password@]host[:port][/db]`.
//!
//! Contract: [`NodeAddr::parse`] does no I/O. It accepts a host name, an IPv4 address or a
//! bracketed IPv6 address (`[::1]`), port 1-65535 (default 6379), database 0-2^31 (default 0),
//! and a percent-encoded user and password. It refuses TLS (`rediss://`), query strings,
//! fragments, unbracketed IPv6 and anything else it does not understand, rather than guess.
//! Error texts and `Debug` never show the password.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use crate::error::{Error, NodeError, UrlRule};

/// The default Redis port.
pub const DEFAULT_PORT: u16 = 6379;

/// A parsed node URL.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeAddr {
    host: String,
    port: u16,
    user: Option<Vec<u8>>,
    password: Option<Vec<u8>>,
    db: u32,
}

impl NodeAddr {
    /// Parses a `redis://` URL.
    pub fn parse(url: &str) -> Result<Self, Error> {
        let fail = |reason| Error::InvalidUrl {
            url: redact(url),
            reason,
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| fail(UrlRule::MissingScheme))?;
        if scheme.eq_ignore_ascii_case("rediss") {
            return Err(fail(UrlRule::TlsUnsupported));
        }
        if !scheme.eq_ignore_ascii_case("redis") {
            return Err(fail(UrlRule::BadScheme));
        }
        if rest.contains(['?', '#']) {
            return Err(fail(UrlRule::QueryOrFragment));
        }
        if rest
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(fail(UrlRule::Whitespace));
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((info, hostport)) => (Some(info), hostport),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let (user, password) = info
                    .split_once(':')
                    .ok_or_else(|| fail(UrlRule::Credentials))?;
                let user = percent_decode(user).ok_or_else(|| fail(UrlRule::PercentEncoding))?;
                let password =
                    percent_decode(password).ok_or_else(|| fail(UrlRule::PercentEncoding))?;
                if password.is_empty() {
                    return Err(fail(UrlRule::EmptyPassword));
                }
                ((!user.is_empty()).then_some(user), Some(password))
            }
        };
        let (host, port) = split_host_port(hostport).map_err(fail)?;
        let db = match path {
            "" => 0,
            digits if digits.bytes().all(|b| b.is_ascii_digit()) && digits.len() <= 10 => digits
                .parse::<u32>()
                .ok()
                .filter(|&db| db <= i32::MAX as u32)
                .ok_or_else(|| fail(UrlRule::DatabaseRange))?,
            _ => return Err(fail(UrlRule::BadPath)),
        };
        Ok(Self {
            host: canonical_host(host),
            port,
            user,
            password,
            db,
        })
    }

    /// Host name or address, without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Database selected after connecting.
    pub fn db(&self) -> u32 {
        self.db
    }

    pub(crate) fn user(&self) -> Option<&[u8]> {
        self.user.as_deref()
    }

    pub(crate) fn password(&self) -> Option<&[u8]> {
        self.password.as_deref()
    }

    /// True when both name the same server (host and port), whatever the database or
    /// credentials: one server must never be counted twice towards a quorum.
    pub(crate) fn same_server(&self, other: &Self) -> bool {
        self.host == other.host && self.port == other.port
    }

    /// Resolves to socket addresses. IP literals never touch the resolver; host names use the
    /// system resolver, whose own timeouts apply.
    pub(crate) fn resolve(&self) -> Result<Vec<SocketAddr>, NodeError> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|_| NodeError::Unresolvable)?
            .collect();
        if addrs.is_empty() {
            return Err(NodeError::Unresolvable);
        }
        Ok(addrs)
    }
}

/// `host:port`, with brackets around IPv6 addresses.
impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeAddr")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user.as_deref().map(String::from_utf8_lossy))
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .finish()
    }
}

/// Lowercase for names; the one canonical spelling for IP literals (`[0::1]` is `::1`, and an
/// IPv4-mapped `::ffff:127.0.0.1` is `127.0.0.1`), so one server is never counted twice.
fn canonical_host(host: &str) -> String {
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.to_canonical().to_string(),
        Err(_) => host.to_ascii_lowercase(),
    }
}

fn split_host_port(hostport: &str) -> Result<(&str, u16), UrlRule> {
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or(UrlRule::UnclosedBracket)?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(UrlRule::BadIpv6);
        }
        match after {
            "" => (host, None),
            after => (
                host,
                Some(after.strip_prefix(':').ok_or(UrlRule::JunkAfterBracket)?),
            ),
        }
    } else {
        match hostport.split_once(':') {
            Some((_, port)) if port.contains(':') => return Err(UrlRule::UnbracketedIpv6),
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(UrlRule::MissingHost);
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => digits
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or(UrlRule::PortRange)?,
        Some(_) => return Err(UrlRule::BadPort),
    };
    Ok((host, port))
}

fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(byte) = bytes.next() {
        if byte == b'%' {
            let hi = hex_value(bytes.next()?)?;
            let lo = hex_value(bytes.next()?)?;
            out.push(hi << 4 | lo);
        } else {
            out.push(byte);
        }
    }
    Some(out)
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// The URL with everything before the last `@` (after the scheme, when there is one)
/// replaced, so errors can quote it without leaking a password. The path can only be a
/// database number, so any `@` belongs to the credentials, even in a garbled URL.
pub(crate) fn redact(url: &str) -> String {
    let Some((credentials, host)) = url.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once("://") {
        Some((scheme, _)) => format!("{scheme}://***@{host}"),
        None => format!("***@{host}"),
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(reason("http://h"), "scheme must be redis://");
        assert_eq!(reason("rediss://h"), "tls (rediss://) is not supported");
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
    fn same_server_ignores_database_and_credentials() {
        assert!(ok("redis://H:1/2").same_server(&ok("redis://:x@h:1/0")));
        assert!(ok("redis://[::1]:1").same_server(&ok("redis://[0:0::1]:1")));
        assert!(ok("redis://127.0.0.1:1").same_server(&ok("redis://[::ffff:127.0.0.1]:1")));
        assert_eq!(ok("redis://[::FFFF:7F00:1]:1").to_string(), "127.0.0.1:1");
        assert!(!ok("redis://h:1").same_server(&ok("redis://h:2")));
    }
}
