//! The floor of a handoff: the least any client that hears releases on a subscription must
//! pay, measured in the same run as resplock's handoffs, interleaved with them.
//!
//! The floor waiter is a child process with one thread and plain blocking sockets (the test
//! rig's `Raw`), nothing of resplock. Per order it makes the same attempt as `lock_within`
//! (`SET NX PX` and `PTTL` on every node, which finds the lock held), then sleeps in `read`
//! on its own subscriber connection to node 0. When the release's message arrives it sends
//! `SET NX PX` to every node and stamps its return as soon as a quorum said `OK` (reading
//! the nodes in order; a node the release has not reached yet is asked again at once), then
//! reads the other replies and deletes its keys with `DEL` (which publishes nothing). It has no listener thread to hand the message over, no pool, no script, no
//! deadline bookkeeping: what is left is the chain that no client can avoid, Redis waking up
//! to publish, the waiter waking up to read it, Redis waking up to run the `SET`, and the
//! waiter waking up to read the answer. On an idle machine each wake-up costs tens of
//! microseconds; the uncontended baseline, timed in a busy loop, pays few of them.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use resplock::script::RELEASED_CHANNEL_PREFIX;

use crate::clock::Clock;
use crate::support::{Raw, RawReply};

/// How long the floor waiter reads its subscription before it gives up on an order.
const SLEEP_LIMIT: Duration = Duration::from_secs(20);

/// `host:port` of a `redis://host:port[/db]` URL of the bench's own nodes.
fn host_port(url: &str) -> &str {
    let rest = url
        .strip_prefix("redis://")
        .unwrap_or_else(|| panic!("floor child: not a redis:// URL: {url:?}"));
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

fn connect(url: &str) -> Raw {
    Raw::connect(host_port(url)).unwrap_or_else(|e| panic!("floor child: connect {url}: {e}"))
}

fn read(raw: &mut Raw, what: &str) -> RawReply {
    raw.read_reply()
        .unwrap_or_else(|e| panic!("floor child: {what}: {e}"))
}

/// The child's side: for each `wait <resource> <ttl ms> <max_wait ms>` line, the floor
/// handoff described in the module docs, then `got <called ns> <acquired ns> 0`.
pub fn floor_child(urls: &[String]) {
    let mut nodes: Vec<Raw> = urls.iter().map(|u| connect(u)).collect();
    let mut sub = connect(&urls[0]);
    sub.set_timeout(SLEEP_LIMIT);
    let quorum = urls.len() / 2 + 1;
    let clock = Clock::new();
    let mut subscribed = String::new();
    let mut out = std::io::stdout().lock();
    for (order, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.unwrap_or_else(|e| panic!("floor child: stdin: {e}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        let ["wait", resource, ttl, _max_wait] = words[..] else {
            panic!("floor child: bad order {line:?}");
        };
        let channel = format!("{RELEASED_CHANNEL_PREFIX}{resource}");
        if subscribed != channel {
            sub.send(&[b"SUBSCRIBE", channel.as_bytes()])
                .unwrap_or_else(|e| panic!("floor child: SUBSCRIBE: {e}"));
            read(&mut sub, "SUBSCRIBE confirmation");
            subscribed = channel.clone();
        }
        let value = format!("floor-{order}");
        let key = resource.as_bytes();
        let set: [&[u8]; 6] = [b"SET", key, value.as_bytes(), b"NX", b"PX", ttl.as_bytes()];
        let called = Instant::now();
        for node in &mut nodes {
            node.send(&set)
                .and_then(|()| node.send(&[b"PTTL", key]))
                .unwrap_or_else(|e| panic!("floor child: attempt: {e}"));
        }
        for node in &mut nodes {
            assert!(
                !read(node, "attempt's SET").is_ok(),
                "floor child: {resource} was free at the first attempt"
            );
            read(node, "attempt's PTTL");
        }
        match read(&mut sub, "the release's message") {
            RawReply::Array(Some(items))
                if items.len() == 3 && items[1].as_bulk() == Some(channel.as_bytes()) => {}
            other => panic!("floor child: unexpected push {other:?}"),
        }
        // A node the release has not reached yet says no: ask it again at once.
        let mut holds = vec![false; nodes.len()];
        let mut acquired = None;
        while acquired.is_none() {
            let asked: Vec<usize> = (0..nodes.len()).filter(|&i| !holds[i]).collect();
            for &i in &asked {
                nodes[i]
                    .send(&set)
                    .unwrap_or_else(|e| panic!("floor child: SET: {e}"));
            }
            for &i in &asked {
                holds[i] = read(&mut nodes[i], "SET").is_ok();
                if acquired.is_none() && holds.iter().filter(|&&h| h).count() >= quorum {
                    acquired = Some(Instant::now());
                }
            }
        }
        let acquired = acquired.unwrap_or_else(Instant::now);
        for node in &mut nodes {
            node.send(&[b"DEL", key])
                .unwrap_or_else(|e| panic!("floor child: DEL: {e}"));
        }
        for node in &mut nodes {
            read(node, "DEL");
        }
        writeln!(out, "got {} {} 0", clock.ns(called), clock.ns(acquired))
            .and_then(|()| out.flush())
            .unwrap_or_else(|e| panic!("floor child: stdout: {e}"));
    }
}
