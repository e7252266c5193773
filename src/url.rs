//! Node URLs: `redis://[[user]:password@]host[:port][/db]`, the same with `rediss://` for TLS
//! (with the `tls` feature), and `unix:///path/to/redis.sock[?db=N&password=...]`.
//!
//! Contract: [`NodeAddr::parse`] does no I/O. For `redis://` and `rediss://` it accepts a host
//! name, an IPv4 address or a bracketed IPv6 address (`[::1]`), port 1-65535 (default 6379),
//! database 0 to 2^31 - 1 (default 0), and a percent-encoded user and password; it refuses query
//! strings, fragments, unbracketed IPv6 and anything else it does not understand, rather than
//! guess. `rediss://` without the `tls` feature is refused. For `unix://` it accepts an
//! absolute, percent-encoded socket path, credentials before `@` (`unix://:pw@/path`) or as
//! query parameters `password=` (redis-py; `pass=` as redis-rs spells it) and `username=`
//! (`user=`), and `db=`; query values are form-decoded (`+` is a space, as in redis-py and
//! redis-rs). Error texts and `Debug` never show the password.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
#[cfg(unix)]
use std::path::PathBuf;

use crate::error::{Error, UrlRule};

/// The default Redis port.
pub const DEFAULT_PORT: u16 = 6379;

/// A parsed node URL.
///
/// Equality compares what the URL says (transport, host, port or socket path, credentials,
/// database), not the TLS settings of the manager it belongs to.
#[derive(Clone)]
pub struct NodeAddr {
    host: String,
    port: u16,
    user: Option<Vec<u8>>,
    password: Option<Vec<u8>>,
    db: u32,
    transport: Transport,
}

/// How a node is reached.
#[derive(Clone)]
pub(crate) enum Transport {
    /// `redis://`: plain TCP.
    Tcp,
    /// `rediss://`: TLS over TCP, with the manager's TLS configuration once
    /// [`crate::Builder::build`] attached it.
    #[cfg(feature = "tls")]
    Tls(Option<crate::tls::Connector>),
    /// `unix://`: a Unix-domain stream socket at this path.
    #[cfg(unix)]
    Unix(PathBuf),
}

impl PartialEq for Transport {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Tcp, Self::Tcp) => true,
            #[cfg(feature = "tls")]
            (Self::Tls(_), Self::Tls(_)) => true,
            #[cfg(unix)]
            (Self::Unix(a), Self::Unix(b)) => a == b,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp => f.write_str("Tcp"),
            #[cfg(feature = "tls")]
            Self::Tls(_) => f.write_str("Tls"),
            #[cfg(unix)]
            Self::Unix(path) => f.debug_tuple("Unix").field(path).finish(),
        }
    }
}

impl PartialEq for NodeAddr {
    fn eq(&self, other: &Self) -> bool {
        self.host == other.host
            && self.port == other.port
            && self.user == other.user
            && self.password == other.password
            && self.db == other.db
            && self.transport == other.transport
    }
}

impl Eq for NodeAddr {}

impl NodeAddr {
    /// Parses a `redis://`, `rediss://` (with the `tls` feature) or `unix://` URL.
    pub fn parse(url: &str) -> Result<Self, Error> {
        let fail = |reason| Error::InvalidUrl {
            url: redact(url),
            reason,
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| fail(UrlRule::MissingScheme))?;
        let transport = if scheme.eq_ignore_ascii_case("rediss") {
            tls_transport().map_err(fail)?
        } else if scheme.eq_ignore_ascii_case("redis") {
            Transport::Tcp
        } else if scheme.eq_ignore_ascii_case("unix") {
            return Self::parse_unix(rest).map_err(fail);
        } else {
            return Err(fail(UrlRule::BadScheme));
        };
        if rest.contains(['?', '#']) {
            return Err(fail(UrlRule::QueryOrFragment));
        }
        if has_whitespace(rest) {
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
            digits => parse_db(digits).map_err(|rule| match rule {
                UrlRule::BadDbParameter => fail(UrlRule::BadPath),
                other => fail(other),
            })?,
        };
        let host = canonical_host(host);
        #[cfg(feature = "tls")]
        if matches!(transport, Transport::Tls(_)) && !crate::tls::valid_server_name(&host) {
            return Err(fail(UrlRule::TlsServerName));
        }
        Ok(Self {
            host,
            port,
            user,
            password,
            db,
            transport,
        })
    }

    /// `unix://[[user]:password@]/path[?db=N&password=...]`, after the scheme.
    fn parse_unix(rest: &str) -> Result<Self, UrlRule> {
        if rest.contains('#') {
            return Err(UrlRule::Fragment);
        }
        if has_whitespace(rest) {
            return Err(UrlRule::Whitespace);
        }
        let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = match before_query.find('/') {
            Some(slash) => before_query.split_at(slash),
            None => (before_query, ""),
        };
        let mut user = None;
        let mut password = None;
        if !authority.is_empty() {
            let info = authority.strip_suffix('@').ok_or(UrlRule::UnixHost)?;
            let (name, secret) = info.split_once(':').ok_or(UrlRule::Credentials)?;
            let name = percent_decode(name).ok_or(UrlRule::PercentEncoding)?;
            let secret = percent_decode(secret).ok_or(UrlRule::PercentEncoding)?;
            if secret.is_empty() {
                return Err(UrlRule::EmptyPassword);
            }
            user = (!name.is_empty()).then_some(name);
            password = Some(secret);
        }
        let mut db = None;
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').ok_or(UrlRule::UnknownParameter)?;
            let value = form_decode(value).ok_or(UrlRule::PercentEncoding)?;
            let slot = match key {
                "db" => {
                    let text = std::str::from_utf8(&value).map_err(|_| UrlRule::BadDbParameter)?;
                    if db.replace(parse_db(text)?).is_some() {
                        return Err(UrlRule::RepeatedParameter);
                    }
                    continue;
                }
                "password" | "pass" => {
                    if value.is_empty() {
                        return Err(UrlRule::EmptyPassword);
                    }
                    &mut password
                }
                "username" | "user" => &mut user,
                _ => return Err(UrlRule::UnknownParameter),
            };
            if slot.is_some() {
                return Err(UrlRule::RepeatedParameter);
            }
            *slot = Some(value).filter(|v| !v.is_empty());
        }
        if user.is_some() && password.is_none() {
            return Err(UrlRule::Credentials);
        }
        let path = percent_decode(path).ok_or(UrlRule::PercentEncoding)?;
        if path.first() != Some(&b'/') || path.contains(&0) {
            return Err(UrlRule::UnixPath);
        }
        Ok(Self {
            host: String::new(),
            port: 0,
            user,
            password,
            db: db.unwrap_or(0),
            transport: unix_transport(path)?,
        })
    }

    /// Host name or address, without brackets; empty for a Unix socket.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// TCP port; 0 for a Unix socket.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// True for a `rediss://` URL: the connection is TLS.
    pub fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Transport::Tls(_) = self.transport {
            return true;
        }
        false
    }

    /// The socket path of a `unix://` URL.
    pub fn unix_path(&self) -> Option<&Path> {
        #[cfg(unix)]
        if let Transport::Unix(path) = &self.transport {
            return Some(path);
        }
        None
    }

    pub(crate) fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Gives a `rediss://` node the manager's TLS configuration (no-op for other nodes).
    #[cfg(feature = "tls")]
    pub(crate) fn set_tls(&mut self, connector: &crate::tls::Connector) {
        if let Transport::Tls(slot) = &mut self.transport {
            *slot = Some(connector.clone());
        }
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

    /// True when both name the same server (host and port, or socket path), whatever the
    /// database, the credentials or TLS: one server must never be counted twice towards a
    /// quorum. A server reached over TCP and over its Unix socket cannot be recognised as one.
    pub(crate) fn same_server(&self, other: &Self) -> bool {
        match (self.unix_path(), other.unix_path()) {
            // `Path` equality ignores repeated separators and `.` components.
            (Some(a), Some(b)) => a == b,
            (None, None) => self.host == other.host && self.port == other.port,
            _ => false,
        }
    }
}

/// `host:port`, with brackets around IPv6 addresses; the socket path for a Unix socket.
impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = self.unix_path() {
            write!(f, "{}", path.display())
        } else if self.host.contains(':') {
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
            .field("transport", &self.transport)
            .finish()
    }
}

/// Lowercase for names (without a trailing dot: `example.com.` is `example.com`); the one
/// canonical spelling for IP literals (`[0::1]` is `::1`, an IPv4-mapped `::ffff:127.0.0.1` is
/// `127.0.0.1`, and every spelling the C library's `inet_aton` accepts for an IPv4 address,
/// such as `127.1`, `0x7f.0.0.1`, `017700000001` or `2130706433`, is `127.0.0.1`), so one
/// server is never counted twice.
fn canonical_host(host: &str) -> String {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip.to_canonical().to_string();
    }
    if let Some(ip) = inet_aton(host) {
        return ip.to_string();
    }
    let name = host
        .strip_suffix('.')
        .filter(|n| !n.is_empty())
        .unwrap_or(host);
    name.to_ascii_lowercase()
}

/// The IPv4 address `text` stands for in the numbers-and-dots notation of `inet_aton(3)`: one
/// to four parts, each decimal, octal (leading `0`) or hexadecimal (`0x`), the last one
/// filling the remaining bytes. `None` when it is not such a spelling (a host name).
fn inet_aton(text: &str) -> Option<std::net::Ipv4Addr> {
    let parts: Vec<u64> = text
        .split('.')
        .map(|part| {
            let (digits, radix) = match part.get(..2) {
                Some("0x" | "0X") => (part.get(2..)?, 16),
                _ if part.len() > 1 && part.starts_with('0') => (part.get(1..)?, 8),
                _ => (part, 10),
            };
            if digits.is_empty() && radix != 16 {
                return None;
            }
            if digits.is_empty() {
                return Some(0);
            }
            if !digits.chars().all(|c| c.is_digit(radix)) {
                return None;
            }
            u64::from_str_radix(digits, radix).ok()
        })
        .collect::<Option<_>>()?;
    let (last, leading) = parts.split_last()?;
    if leading.len() > 3 || leading.iter().any(|&byte| byte > 0xff) {
        return None;
    }
    let room = 8 * (4 - leading.len() as u32);
    if room < 64 && *last >= 1u64 << room {
        return None;
    }
    let value = leading
        .iter()
        .fold(0u64, |acc, &byte| acc << 8 | byte)
        .checked_shl(room)?
        | last;
    u32::try_from(value).ok().map(std::net::Ipv4Addr::from)
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

fn has_whitespace(text: &str) -> bool {
    text.bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
}

/// A database number: at most 10 digits, at most 2^31 - 1.
fn parse_db(digits: &str) -> Result<u32, UrlRule> {
    if digits.is_empty() || digits.len() > 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UrlRule::BadDbParameter);
    }
    digits
        .parse::<u32>()
        .ok()
        .filter(|&db| db <= i32::MAX as u32)
        .ok_or(UrlRule::DatabaseRange)
}

#[cfg(feature = "tls")]
fn tls_transport() -> Result<Transport, UrlRule> {
    Ok(Transport::Tls(None))
}

#[cfg(not(feature = "tls"))]
fn tls_transport() -> Result<Transport, UrlRule> {
    Err(UrlRule::TlsUnsupported)
}

#[cfg(unix)]
fn unix_transport(path: Vec<u8>) -> Result<Transport, UrlRule> {
    use std::os::unix::ffi::OsStringExt;
    let path = PathBuf::from(std::ffi::OsString::from_vec(path));
    // The same check the connect makes (the path must fit `sun_path`), done before any I/O.
    socket2::SockAddr::unix(&path).map_err(|_| UrlRule::UnixPathTooLong)?;
    Ok(Transport::Unix(path))
}

#[cfg(not(unix))]
fn unix_transport(_path: Vec<u8>) -> Result<Transport, UrlRule> {
    Err(UrlRule::UnixUnsupported)
}

fn percent_decode(text: &str) -> Option<Vec<u8>> {
    decode(text, false)
}

/// Query values: percent-decoding, and `+` is a space (`application/x-www-form-urlencoded`).
fn form_decode(text: &str) -> Option<Vec<u8>> {
    decode(text, true)
}

fn decode(text: &str, plus_is_space: bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(byte) = bytes.next() {
        if byte == b'%' {
            let hi = hex_value(bytes.next()?)?;
            let lo = hex_value(bytes.next()?)?;
            out.push(hi << 4 | lo);
        } else if byte == b'+' && plus_is_space {
            out.push(b' ');
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

/// The URL as errors may quote it, with anything that may be a password replaced by `***`.
/// A garbled URL can be read several ways (is a `?` inside the password, or the start of a
/// query? is an `@` inside a query value, or the end of the credentials?), so every reading
/// hides what it would call secret, and the union is hidden:
/// - everything between the scheme and the last `@` (credentials);
/// - after the first `?`: every value but a database number, and the whole rest from the
///   first piece that is not a known parameter (a password holding `&` or `=` may look like
///   more parameters); after the first `#`, everything;
/// - without any `@`: whatever follows the first `:` of the authority, to the end, unless it
///   is a port (`redis://:secret` and `redis://user:secret` are a password that lost its
///   `@host`, and a password may hold a `/`).
pub(crate) fn redact(url: &str) -> String {
    let len = url.len();
    let mut hidden = vec![false; len];
    let mut hide = |from: usize, to: usize| {
        for slot in hidden.iter_mut().take(to).skip(from) {
            *slot = true;
        }
    };
    let tail = |from: usize| url.get(from..).unwrap_or_default();
    let body = url.find("://").map_or(0, |at| at + 3);
    match url.rfind('@') {
        Some(at) if at >= body => hide(body, at),
        Some(at) => hide(0, at),
        None => {
            let end = match url.find("://") {
                Some(_) => tail(body).find(['/', '?', '#']).map_or(len, |e| body + e),
                // Without `://` the scheme itself may be garbled (`redis//`): all of it counts.
                None => len,
            };
            let authority = url.get(body..end).unwrap_or_default();
            // In `[v6]:port` the colons inside the brackets are the address's.
            let skip = match authority.strip_prefix('[').and_then(|v6| v6.find(']')) {
                Some(close) => close + 2,
                None => 0,
            };
            let colon = authority
                .get(skip..)
                .and_then(|rest| rest.find(':'))
                .map(|c| body + skip + c);
            if let Some(colon) = colon {
                if !is_port_then_path(tail(colon + 1)) {
                    hide(colon + 1, len);
                }
            }
        }
    }
    if let Some(hash) = url.find('#') {
        hide(hash + 1, len);
    }
    if let Some(question) = url.find('?') {
        let query_end = tail(question).find('#').map_or(len, |e| question + e);
        let mut at = question + 1;
        for pair in url
            .get(question + 1..query_end)
            .unwrap_or_default()
            .split('&')
        {
            let value_from = match pair.split_once('=') {
                Some(("db", db)) if db.bytes().all(|b| b.is_ascii_digit()) => None,
                Some((key @ ("password" | "pass" | "user" | "username" | "db"), _)) => {
                    Some(at + key.len() + 1)
                }
                None if pair.is_empty() => None,
                _ => {
                    hide(at, len);
                    break;
                }
            };
            if let Some(from) = value_from {
                hide(from, at + pair.len());
            }
            at += pair.len() + 1;
        }
    }
    let mut out = String::with_capacity(len);
    let mut run_start = 0;
    let mut in_hidden = false;
    for (index, &secret) in hidden.iter().enumerate() {
        if secret != in_hidden {
            if !in_hidden {
                out.push_str(url.get(run_start..index).unwrap_or_default());
            }
            if secret {
                out.push_str("***");
            }
            run_start = index;
            in_hidden = secret;
        }
    }
    if !in_hidden {
        out.push_str(tail(run_start));
    }
    out
}

/// Digits, then nothing or a `/` and anything: a port, maybe with a database path.
fn is_port_then_path(text: &str) -> bool {
    let port = text.split('/').next().unwrap_or(text);
    !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
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
    fn redact_hides_credentials_and_every_query_value_but_db() {
        assert_eq!(
            redact("unix:///tmp/r.sock?db=1&password=secret&user=alice"),
            "unix:///tmp/r.sock?db=1&password=***&user=***"
        );
        assert_eq!(
            redact("unix://:secret@/tmp/r.sock?pass=secret"),
            "unix://***@/tmp/r.sock?pass=***"
        );
        assert_eq!(
            redact("unix:///tmp/r.sock?secret"),
            "unix:///tmp/r.sock?***"
        );
        assert_eq!(
            redact("redis://h?password=secret"),
            "redis://h?password=***"
        );
        assert_eq!(redact("unix:///tmp/s?password=se@cret"), "unix://***");
        assert_eq!(redact("redis://:se?cret@h"), "redis://***");
        assert_eq!(redact("redis://h:1/2"), "redis://h:1/2");
        assert_eq!(redact("unix:///s?db=1#secret"), "unix:///s?db=1#***");
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
    fn a_password_that_lost_its_host_is_hidden_too() {
        for url in [
            "redis://:hunter2",
            "redis://user:hunter2",
            "redis://:hunter2/0",
            ":hunter2",
            "redis://[::1]:hunter2",
        ] {
            let shown = redact(url);
            assert!(!shown.contains("hunter2"), "{url} -> {shown}");
        }
        assert_eq!(redact("redis://h:6379/1"), "redis://h:6379/1");
        assert_eq!(redact("redis://[::1]:7/1"), "redis://[::1]:7/1");
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
