//! The byte stream under one connection: TCP, a Unix-domain socket, or TLS over TCP.
//!
//! Contract (the same for every transport, so [`crate::conn`] has one code path):
//! - [`Stream::read`] makes at most one blocking socket call, bounded by the read timeout.
//!   `WouldBlock` or `TimedOut` mean "nothing usable yet": the caller checks its deadline
//!   (TLS also answers so when part of a record arrived). `Ok(0)` or `UnexpectedEof`: closed.
//! - [`Stream::write`] makes at most one blocking socket call and returns how many bytes it
//!   *took*. They are all on the wire once [`Stream::pending`] is false (always, for TCP and
//!   Unix); [`Stream::write_pending`] makes one socket write of what TLS still holds.
//! - Timeouts and non-blocking mode are those of the socket underneath.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::time::Duration;

#[cfg(feature = "tls")]
use crate::tls::TlsStream;

/// One connection's transport.
pub(crate) enum Stream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
    /// Boxed: a TLS session is a few kilobytes, and connections move between pool and rounds.
    #[cfg(feature = "tls")]
    Tls(Box<TlsStream>),
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(s) => f.debug_tuple("Tcp").field(&s.peer_addr().ok()).finish(),
            #[cfg(unix)]
            Self::Unix(s) => f.debug_tuple("Unix").field(&s.peer_addr().ok()).finish(),
            #[cfg(feature = "tls")]
            Self::Tls(s) => f.debug_tuple("Tls").field(s).finish(),
        }
    }
}

impl Stream {
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.read(buf),
            #[cfg(unix)]
            Self::Unix(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.read(buf),
        }
    }

    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.write(buf),
            #[cfg(unix)]
            Self::Unix(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.write(buf),
        }
    }

    /// True while bytes already taken by [`Stream::write`] wait to be sent (TLS only).
    pub fn pending(&self) -> bool {
        match self {
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.pending(),
            _ => false,
        }
    }

    /// One socket write of what [`Stream::pending`] reports.
    pub fn write_pending(&mut self) -> io::Result<usize> {
        match self {
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.write_pending(),
            _ => Ok(0),
        }
    }

    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.set_read_timeout(timeout),
            #[cfg(unix)]
            Self::Unix(s) => s.set_read_timeout(timeout),
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.socket().set_read_timeout(timeout),
        }
    }

    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.set_write_timeout(timeout),
            #[cfg(unix)]
            Self::Unix(s) => s.set_write_timeout(timeout),
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.socket().set_write_timeout(timeout),
        }
    }

    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.set_nonblocking(on),
            #[cfg(unix)]
            Self::Unix(s) => s.set_nonblocking(on),
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.socket().set_nonblocking(on),
        }
    }
}
