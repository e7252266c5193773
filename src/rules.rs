//! The rules a configuration, a URL, a ttl or a TLS file can break, and the TLS check that
//! failed on a node: small `Copy` enums, each with one message table (the shape of
//! `httparse::Error`), carried by [`crate::Error`] and [`crate::NodeError`].

use std::fmt;
use std::ops::Deref;

/// Defines a `Copy` reason enum with one message per variant, as `httparse::Error` does: the
/// message table is the single place the text lives.
macro_rules! rules {
    (
        $(#[$doc:meta])*
        $name:ident { $($(#[$vdoc:meta])* $variant:ident => $message:literal,)* }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            /// Every rule, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The rule's message: lowercase, no trailing period.
            pub const fn message(self) -> &'static str {
                match self {
                    $($name::$variant => $message,)*
                }
            }

            /// The rule whose message this is.
            pub fn from_message(message: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|rule| rule.message() == message)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.message())
            }
        }

        /// Reads as its message, so code that treated the reason as text keeps working.
        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                self.message()
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.message() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.message() == *other
            }
        }
    };
}

rules! {
    /// Why a [`crate::Builder`] configuration was refused ([`crate::Error::InvalidConfig`]).
    ConfigRule {
        /// No node URLs were given.
        NoNodes => "no nodes",
        /// More than [`crate::MAX_NODES`] nodes.
        TooManyNodes => "more than 64 nodes",
        /// Two URLs name the same server (host and port, whatever the database or password).
        DuplicateNode => "a node is listed twice",
        /// `retries` is `u32::MAX` (there would be no attempt count left to report).
        Retries => "retries must be below u32::MAX",
        /// `drift_factor` is NaN, negative, or 1 or more.
        DriftFactor => "drift_factor must be in [0, 1)",
        /// `node_timeout` is zero or above an hour.
        NodeTimeout => "node_timeout must be in (0, 1 h]",
        /// `connect_timeout` is zero or above an hour.
        ConnectTimeout => "connect_timeout must be in (0, 1 h]",
        /// `retry_delay` or `retry_jitter` is above an hour.
        RetryDelay => "retry_delay and retry_jitter must be at most 1 h",
        /// `restart_quarantine` is above [`crate::MAX_TTL`].
        RestartQuarantine => "restart_quarantine must be at most MAX_TTL",
        /// `reply_limits` under which a lock's own replies cannot be decoded.
        ReplyLimitsTooSmall =>
            "reply_limits too small: need bulk >= 4 KiB, lines >= 512 B, arrays >= 2, depth >= 1",
        /// `reply_limits` that allow bulk strings over 16 MiB or lines over 1 MiB.
        ReplyLimitsTooLarge => "reply_limits too large: bulk at most 16 MiB, lines at most 1 MiB",
        /// `tls_ca_file` was combined with the test-only opt-out of certificate verification:
        /// one trusts a CA, the other trusts anything, and which one was meant is unclear.
        TlsVerification => "tls_ca_file and the test-only certificate opt-out exclude each other",
        /// The TLS stack refused its own default configuration (should never happen).
        TlsSetup => "tls configuration could not be built",
    }
}

rules! {
    /// Why a node URL was refused ([`crate::Error::InvalidUrl`]).
    UrlRule {
        /// No `scheme://`.
        MissingScheme => "missing redis:// scheme",
        /// `rediss://` in a build without the `tls` feature.
        TlsUnsupported => "tls (rediss://) is not supported: build with the tls feature",
        /// A scheme other than `redis://`, `rediss://` or `unix://`.
        BadScheme => "scheme must be redis://, rediss:// or unix://",
        /// `?` or `#` in a `redis://` or `rediss://` URL.
        QueryOrFragment => "query strings and fragments are not supported",
        /// Whitespace or a control character anywhere.
        Whitespace => "whitespace or control character",
        /// `user@host` without a `:`.
        Credentials => "credentials must be user:password or :password",
        /// A `%` not followed by two hex digits.
        PercentEncoding => "bad percent-encoding",
        /// `user:@host`.
        EmptyPassword => "empty password",
        /// No host before the port or path.
        MissingHost => "missing host",
        /// `[` without `]`.
        UnclosedBracket => "unclosed [ in ipv6 address",
        /// Brackets around something that is not an IPv6 address.
        BadIpv6 => "invalid ipv6 address",
        /// Bytes between `]` and `:port`.
        JunkAfterBracket => "junk after ]",
        /// An IPv6 address without brackets.
        UnbracketedIpv6 => "ipv6 addresses must be in brackets",
        /// Port 0 or above 65535.
        PortRange => "port out of range",
        /// A port that is empty or not digits.
        BadPort => "invalid port",
        /// A path that is not a database number.
        BadPath => "path must be a database number",
        /// A database number above 2^31 - 1.
        DatabaseRange => "database index out of range",
        /// A `rediss://` host that cannot be a TLS server name (nor an IP address).
        TlsServerName => "host is not a valid tls server name",
        /// `unix://` on a platform without Unix-domain sockets.
        UnixUnsupported => "unix sockets are not supported on this platform",
        /// A host between `unix://` and the path (the form is `unix:///path`).
        UnixHost => "unix:// takes no host: write unix:///path/to/redis.sock",
        /// A `unix://` path that is not absolute, or holds a nul byte.
        UnixPath => "unix socket path must be absolute",
        /// A `unix://` path longer than the operating system accepts (`sun_path`).
        UnixPathTooLong => "unix socket path too long",
        /// A query parameter other than `db`, `password`, `pass`, `username` or `user`, or one
        /// without `=`.
        UnknownParameter =>
            "unknown query parameter (unix:// takes db, password, pass, username, user)",
        /// The same query parameter twice, or a password (or user) both before `@` and in
        /// the query.
        RepeatedParameter => "query parameter given twice",
        /// `db=` that is not a database number.
        BadDbParameter => "db must be a database number",
        /// `#` in a `unix://` URL.
        Fragment => "fragments are not supported",
    }
}

rules! {
    /// Why a PEM file given to [`crate::Builder`] was refused ([`crate::Error::InvalidTlsFile`]).
    /// Only with the `tls` feature.
    TlsFileRule {
        /// The file does not exist.
        NotFound => "file not found",
        /// The file exists but may not be read.
        PermissionDenied => "permission denied",
        /// Any other error while reading the file.
        Unreadable => "cannot read the file",
        /// Larger than 16 MiB.
        TooLarge => "file larger than 16 mib",
        /// Bytes that are not well-formed PEM.
        BadPem => "malformed pem",
        /// No `CERTIFICATE` block in a CA or client certificate file.
        NoCertificate => "no pem certificate in the file",
        /// A certificate that cannot be parsed or used as a trust anchor.
        BadCertificate => "a certificate in the file is malformed",
        /// No private key block (`PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`) in the
        /// key file.
        NoPrivateKey => "no pem private key in the file",
        /// The private key is of a kind the TLS stack cannot sign with, or does not belong to
        /// the client certificate.
        KeyMismatch => "private key unusable or not the client certificate's",
    }
}

rules! {
    /// Which TLS check failed on a node ([`crate::NodeError::Tls`]). Only with the `tls`
    /// feature.
    ///
    /// Failures of the server's certificate show during the handshake, inside the connect
    /// deadline. A server that refuses *our* certificate can only say so after the handshake
    /// in TLS 1.3, so every new TLS connection makes one round trip (`AUTH`, `SELECT` or
    /// `PING`) before it is used: those failures show at connect time too.
    TlsError {
        /// The server's chain does not lead to a trusted root: the wrong CA, or a private CA
        /// without `Builder::tls_ca_file`.
        UnknownIssuer => "tls: server certificate not signed by a trusted ca",
        /// The certificate is valid, but not for the host name or IP address of the URL.
        HostNameMismatch => "tls: server certificate not valid for the host name",
        /// The certificate's validity ended (`notAfter` in the past).
        Expired => "tls: server certificate expired",
        /// The certificate's validity has not started (`notBefore` in the future).
        NotYetValid => "tls: server certificate not valid yet",
        /// The certificate was revoked.
        Revoked => "tls: server certificate revoked",
        /// Any other defect of the server's certificate (encoding, signature, key usage,
        /// a certificate that is not for servers).
        BadCertificate => "tls: invalid server certificate",
        /// The server answered the handshake with bytes that are not TLS: most likely a
        /// plaintext port (a plaintext Redis that stays silent shows as a handshake timeout
        /// instead).
        NotTls => "tls: server did not answer with tls (a plaintext port?)",
        /// The server requires a client certificate and none was configured
        /// (`Builder::tls_client_cert`).
        ClientCertRequired => "tls: server requires a client certificate",
        /// The server refused the client certificate (unknown CA, expired, wrong usage).
        ClientCertRejected => "tls: server rejected the client certificate",
        /// No protocol version or cipher suite in common, or another handshake refusal.
        HandshakeFailure => "tls: handshake failed (no common version or cipher suite)",
        /// The server broke the TLS protocol (bad record, unexpected message, failed
        /// decryption).
        Protocol => "tls: protocol violation by the server",
        /// Any other TLS failure.
        Other => "tls: failure",
    }
}

impl std::error::Error for TlsError {}

rules! {
    /// Why a ttl was refused ([`crate::Error::InvalidTtl`]).
    TtlRule {
        /// Zero.
        Zero => "ttl must be positive",
        /// Not a whole number of milliseconds.
        SubMillisecond => "ttl must be a whole number of milliseconds",
        /// Above [`crate::MAX_TTL`].
        TooLong => "ttl above MAX_TTL",
        /// Not longer than `ttl * drift_factor + 2 ms`.
        WithinDrift => "ttl not longer than the clock-drift margin",
    }
}
