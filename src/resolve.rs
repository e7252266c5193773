//! Name resolution off the caller's thread, inside the connect deadline.
//!
//! Contract:
//! - IP literals never touch a resolver.
//! - A host name is looked up by the configured resolver (the system's `getaddrinfo` by
//!   default) on a thread of its own, at most one lookup per node at a time. A dial waits for
//!   it no longer than its connect deadline (then [`NodeError::Timeout`] in
//!   [`Phase::Resolve`], which backs off like a connect timeout); a lookup that outlives the
//!   deadline still fills the cache for the next dial, so a slow resolver delays a node, never
//!   loses it for good.
//! - Answers are cached for [`RESOLVE_TTL`]; after that the cached answer is used while a
//!   refresh runs in the background. A failed lookup is remembered for [`NEGATIVE_TTL`]: a
//!   dead resolver is asked at most once per node per that long.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::{NodeError, Phase};
use crate::sync::lock;

/// How long a lookup's answer is used before it is refreshed.
pub const RESOLVE_TTL: Duration = Duration::from_secs(30);

/// How long a failed lookup is remembered.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(1);

/// A resolver: host name and port to socket addresses.
pub(crate) type ResolveFn = dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync;

/// A shared resolver function.
#[derive(Clone)]
pub(crate) struct Resolver(pub Arc<ResolveFn>);

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl Default for Resolver {
    fn default() -> Self {
        Self(Arc::new(system))
    }
}

/// The system resolver (`getaddrinfo`).
pub(crate) fn system(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    (host, port).to_socket_addrs().map(Iterator::collect)
}

/// One node's lookups.
#[derive(Debug, Default)]
pub(crate) struct Lookup {
    state: Mutex<State>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// The last answer, and until when it is fresh.
    answer: Option<(Vec<SocketAddr>, Instant)>,
    failed_until: Option<Instant>,
    running: bool,
}

impl Lookup {
    /// The addresses of `host:port`, before `deadline`.
    pub fn addresses(
        self: &Arc<Self>,
        resolver: &Resolver,
        host: &str,
        port: u16,
        deadline: Instant,
    ) -> Result<Vec<SocketAddr>, NodeError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let mut state = lock(&self.state);
        let now = Instant::now();
        if let Some((addrs, fresh_until)) = &state.answer {
            let addrs = addrs.clone();
            if now >= *fresh_until && !state.running {
                self.start(&mut state, &resolver.0, host, port);
            }
            return Ok(addrs);
        }
        if state.failed_until.is_some_and(|until| now < until) {
            return Err(NodeError::Unresolvable);
        }
        if !state.running {
            self.start(&mut state, &resolver.0, host, port);
        }
        loop {
            if let Some((addrs, _)) = &state.answer {
                return Ok(addrs.clone());
            }
            if !state.running {
                return Err(NodeError::Unresolvable);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(NodeError::Timeout(Phase::Resolve));
            }
            state = self
                .done
                .wait_timeout(state, deadline - now)
                .map_or_else(|poisoned| poisoned.into_inner().0, |(guard, _)| guard);
        }
    }

    /// Starts a lookup on a thread of its own.
    fn start(
        self: &Arc<Self>,
        state: &mut State,
        resolver: &Arc<ResolveFn>,
        host: &str,
        port: u16,
    ) {
        state.running = true;
        let lookup = Arc::clone(self);
        let resolver = Arc::clone(resolver);
        let host = host.to_owned();
        let spawned = std::thread::Builder::new()
            .name("resplock-resolve".into())
            .spawn(move || {
                let result = resolver(&host, port);
                let now = Instant::now();
                let mut state = lock(&lookup.state);
                state.running = false;
                match result {
                    Ok(addrs) if !addrs.is_empty() => {
                        state.answer = Some((addrs, now + RESOLVE_TTL));
                        state.failed_until = None;
                    }
                    // A stale answer stays in use until a lookup succeeds again.
                    _ => state.failed_until = Some(now + NEGATIVE_TTL),
                }
                lookup.done.notify_all();
            });
        if spawned.is_err() {
            state.running = false;
            state.failed_until = Some(Instant::now() + NEGATIVE_TTL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn resolver(
        f: impl Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync + 'static,
    ) -> Resolver {
        Resolver(Arc::new(f))
    }

    #[test]
    fn ip_literals_never_ask_the_resolver() {
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&asked);
        let r = resolver(move |_, _| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(Vec::new())
        });
        let lookup = Arc::new(Lookup::default());
        let deadline = Instant::now() + Duration::from_secs(1);
        let addrs = lookup.addresses(&r, "::1", 7, deadline);
        assert_eq!(addrs, Ok(vec!["[::1]:7".parse().expect("addr")]));
        assert_eq!(asked.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_slow_lookup_times_out_then_fills_the_cache() {
        let r = resolver(|_, port| {
            std::thread::sleep(Duration::from_millis(200));
            Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
        });
        let lookup = Arc::new(Lookup::default());
        let started = Instant::now();
        let first = lookup.addresses(&r, "slow.test", 9, started + Duration::from_millis(20));
        assert_eq!(first, Err(NodeError::Timeout(Phase::Resolve)));
        assert!(
            started.elapsed() < Duration::from_millis(150),
            "waited past the deadline"
        );
        std::thread::sleep(Duration::from_millis(300));
        let later = lookup.addresses(&r, "slow.test", 9, Instant::now());
        assert_eq!(later, Ok(vec![SocketAddr::from(([127, 0, 0, 1], 9))]));
    }

    #[test]
    fn a_failed_lookup_is_not_repeated_for_a_while() {
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&asked);
        let r = resolver(move |_, _| {
            counter.fetch_add(1, Ordering::SeqCst);
            Err(io::Error::other("nxdomain"))
        });
        let lookup = Arc::new(Lookup::default());
        for _ in 0..20 {
            let deadline = Instant::now() + Duration::from_secs(1);
            assert_eq!(
                lookup.addresses(&r, "gone.test", 1, deadline),
                Err(NodeError::Unresolvable)
            );
        }
        assert_eq!(asked.load(Ordering::SeqCst), 1);
    }
}
