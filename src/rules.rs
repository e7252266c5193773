//! The rules a configuration, a URL or a ttl can break: small `Copy` enums, each with one
//! message table (the shape of `httparse::Error`), carried by [`crate::Error`].

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
        ReplyLimitsTooSmall => "reply_limits too small: need bulk >= 4 KiB, lines >= 512 B, arrays >= 2 at depth >= 1",
        /// `reply_limits` that let one reply grow a connection's buffer past 16 MiB.
        ReplyLimitsTooLarge => "reply_limits too large: bulk at most 16 MiB, lines at most 1 MiB",
    }
}

rules! {
    /// Why a node URL was refused ([`crate::Error::InvalidUrl`]).
    UrlRule {
        /// No `scheme://`.
        MissingScheme => "missing redis:// scheme",
        /// `rediss://` without TLS support.
        TlsUnsupported => "tls (rediss://) is not supported",
        /// A scheme other than `redis://`.
        BadScheme => "scheme must be redis://",
        /// `?` or `#` in the URL.
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
    }
}

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
