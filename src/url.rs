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
use crate::redact::redact;

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

#[cfg(test)]
#[path = "url_tests.rs"]
mod tests;
