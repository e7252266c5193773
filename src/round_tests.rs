//! The round's decisions, driven with scripted answers and times: no socket, no clock.

use super::*;
use crate::error::{Phase, ServerError};

const TIMEOUT: Duration = Duration::from_millis(50);

fn setup(nodes: usize, wait: Wait) -> Setup {
    Setup {
        nodes,
        quorum: quorum::quorum(nodes),
        node_timeout: TIMEOUT,
        wait,
        scripted: true,
        locking: false,
        replies: 1,
    }
}

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

/// A round started at `t0` and sent to every node (none owing, none preloaded).
fn sent_to_all(setup: Setup, latency_us: &[u64], t0: Instant) -> Round {
    let latency: Vec<u64> = latency_us.iter().map(|us| us * 1000).collect();
    let mut round = Round::new(setup, &latency, NodeSet::default());
    round.start(t0);
    for node in 0..setup.nodes {
        round.sent(node, false, false);
    }
    round
}

/// The next read, which must exist.
fn read(round: &mut Round, now: Instant) -> (usize, Instant, bool) {
    match round.next(now) {
        Step::Read {
            node,
            until,
            reloading,
        } => (node, until, reloading),
        Step::Done => panic!("expected a read"),
    }
}

fn noscript() -> Answer {
    Answer::Failed(NodeError::Server(ServerError::from_line(b"NOSCRIPT no")))
}

#[test]
fn reads_fastest_first_and_stops_at_a_quorum() {
    let t0 = Instant::now();
    let mut round = sent_to_all(setup(3, Wait::UntilDecided), &[300, 100, 200], t0);
    let (first, until, reloading) = read(&mut round, t0);
    assert_eq!((first, until, reloading), (1, t0 + TIMEOUT, false));
    round.heard(Answer::Yes, t0, t0 + us(100));
    let (second, until, _) = read(&mut round, t0 + us(100));
    assert_eq!((second, until), (2, t0 + TIMEOUT));
    round.heard(Answer::Yes, t0 + us(100), t0 + us(200));
    assert_eq!(
        round.next(t0 + us(200)),
        Step::Done,
        "node 0 is not waited for"
    );
    let outcome = round.finish(t0 + us(250));
    assert!(outcome.granted());
    assert_eq!((outcome.yes, outcome.no), (2, 0));
    assert_eq!(
        outcome.finished,
        t0 + us(200),
        "the last answer used, not the end"
    );
    assert_eq!(outcome.elapsed(), us(200));
    assert_eq!(outcome.vote(0), Vote::Pending);
    assert_eq!((outcome.unread(0), outcome.unread(1)), (1, 0));
    assert!(
        outcome.failures(|_| String::new()).is_empty(),
        "unread is not failed"
    );
    assert_eq!(outcome.unheard(), 1);
}

#[test]
fn a_round_that_cannot_reach_a_quorum_stops_early_too() {
    let t0 = Instant::now();
    let mut round = sent_to_all(setup(3, Wait::UntilDecided), &[100, 200, 300], t0);
    read(&mut round, t0);
    round.heard(Answer::No, t0, t0 + us(100));
    read(&mut round, t0);
    round.heard(Answer::No, t0, t0 + us(200));
    assert_eq!(round.next(t0 + us(200)), Step::Done);
    let outcome = round.finish(t0 + us(200));
    assert!(!outcome.granted());
    assert_eq!((outcome.yes, outcome.no), (0, 2));
}

#[test]
fn all_healthy_reads_every_fast_node_after_the_decision() {
    let t0 = Instant::now();
    let mut round = sent_to_all(setup(3, Wait::AllHealthy), &[100, 200, 300], t0);
    for (node, at) in [(0, 100), (1, 200), (2, 300)] {
        let (next, until, _) = read(&mut round, t0 + us(at - 100));
        assert_eq!((next, until), (node, t0 + TIMEOUT));
        round.heard(Answer::Yes, t0, t0 + us(at));
    }
    assert_eq!(round.next(t0 + us(300)), Step::Done);
    let outcome = round.finish(t0 + us(300));
    assert_eq!(outcome.yes, 3);
    // The third answer came after the decision: it does not lengthen the round.
    assert_eq!(outcome.finished, t0 + us(200));
}

#[test]
fn a_slow_node_is_only_polled_once_decided_and_then_not_awaited() {
    let t0 = Instant::now();
    // Quorum 3 of 5: the third fastest is 60 us, so anything above 1.24 ms is slow.
    let mut round = sent_to_all(setup(5, Wait::AllHealthy), &[40, 50, 60, 5000, 70], t0);
    let mut slow = NodeSet::default();
    slow.insert(3);
    assert_eq!(round.slow(), slow);
    for (node, at) in [(0, 40), (1, 50), (2, 60)] {
        let (next, _, _) = read(&mut round, t0);
        assert_eq!(next, node);
        round.heard(Answer::Yes, t0, t0 + us(at));
    }
    // Decided: node 4 is healthy, so it is still read to the deadline...
    let (next, until, _) = read(&mut round, t0 + us(60));
    assert_eq!((next, until), (4, t0 + TIMEOUT));
    round.heard(Answer::Yes, t0 + us(60), t0 + us(70));
    // ...and the slow node 3 only polled: its deadline is now.
    let now = t0 + us(70);
    let (next, until, _) = read(&mut round, now);
    assert_eq!((next, until), (3, now));
    let heard = round.heard(Answer::Failed(NodeError::Timeout(Phase::Read)), now, now);
    assert_eq!(heard.sample, None, "a poll that found nothing says nothing");
    let outcome = round.finish(now);
    assert_eq!(outcome.vote(3), Vote::NotAwaited);
    let failures = outcome.failures(|n| format!("n{n}"));
    assert_eq!(failures.len(), 1);
    assert_eq!(
        (failures[0].node, failures[0].error.clone()),
        (3, NodeError::NotAwaited)
    );
}

#[test]
fn a_slow_node_is_awaited_while_the_round_is_undecided() {
    let t0 = Instant::now();
    let mut round = sent_to_all(setup(3, Wait::UntilDecided), &[40, 5000, 50], t0);
    read(&mut round, t0);
    round.heard(Answer::Yes, t0, t0 + us(40));
    read(&mut round, t0);
    round.heard(Answer::No, t0, t0 + us(50));
    let (next, until, _) = read(&mut round, t0 + us(50));
    assert_eq!((next, until), (1, t0 + TIMEOUT), "needed, so waited for");
    let heard = round.heard(
        Answer::Failed(NodeError::Timeout(Phase::Read)),
        t0 + us(50),
        t0 + TIMEOUT,
    );
    assert_eq!(
        heard.sample,
        Some(TIMEOUT),
        "an awaited timeout counts as the timeout"
    );
    let outcome = round.finish(t0 + TIMEOUT);
    assert_eq!(
        outcome.vote(1),
        Vote::Failed(NodeError::Timeout(Phase::Read))
    );
    assert_eq!(outcome.unheard(), 1);
}

#[test]
fn a_node_that_owes_earlier_replies_is_read_last() {
    let t0 = Instant::now();
    let setup = setup(3, Wait::AllHealthy);
    let mut round = Round::new(setup, &[10_000, 20_000, 30_000], NodeSet::default());
    round.start(t0);
    round.sent(0, false, true);
    round.sent(1, false, false);
    round.sent(2, false, false);
    let order: Vec<usize> = (0..3)
        .map(|_| {
            let (node, _, _) = read(&mut round, t0);
            round.heard(Answer::Yes, t0, t0 + us(10));
            node
        })
        .collect();
    assert_eq!(order, [1, 2, 0]);
}

#[test]
fn noscript_gets_one_reload_with_its_own_deadline() {
    let t0 = Instant::now();
    let mut round = sent_to_all(setup(3, Wait::AllHealthy), &[100, 200, 300], t0);
    let late = t0 + Duration::from_millis(40);
    let (node, _, _) = read(&mut round, t0);
    let heard = round.heard(noscript(), t0, late);
    // The reload's deadline runs one node timeout from the first reload.
    assert_eq!(heard.reload, Some(late + TIMEOUT));
    round.reload_sent(node);
    for _ in 0..2 {
        read(&mut round, late);
        round.heard(Answer::Yes, late, late + us(10));
    }
    let (again, until, reloading) = read(&mut round, late + us(10));
    assert_eq!((again, until, reloading), (node, late + TIMEOUT, true));
    round.heard(Answer::Yes, late, late + us(20));
    let outcome = round.finish(late + us(20));
    assert_eq!(outcome.yes, 3);
    assert!(outcome.reloaded.contains(node));
}

#[test]
fn a_second_noscript_in_one_call_is_a_failure() {
    let t0 = Instant::now();
    let mut reloaded = NodeSet::default();
    reloaded.insert(0);
    let mut round = Round::new(setup(1, Wait::AllHealthy), &[100_000], reloaded);
    round.start(t0);
    round.sent(0, false, false);
    read(&mut round, t0);
    let heard = round.heard(noscript(), t0, t0 + us(100));
    assert_eq!(heard.reload, None);
    assert_eq!(round.next(t0 + us(100)), Step::Done);
    let outcome = round.finish(t0 + us(100));
    let noscript = |e: &ServerError| e.kind == ServerErrorKind::NoScript;
    assert!(matches!(outcome.vote(0), Vote::Failed(NodeError::Server(e)) if noscript(&e)));
}

#[test]
fn a_reload_that_cannot_be_sent_is_a_failure() {
    let t0 = Instant::now();
    let mut round = sent_to_all(setup(1, Wait::AllHealthy), &[100], t0);
    read(&mut round, t0);
    let heard = round.heard(noscript(), t0, t0 + us(100));
    assert!(heard.reload.is_some());
    round.failed(0, NodeError::Closed);
    assert_eq!(round.next(t0 + us(100)), Step::Done);
    let outcome = round.finish(t0 + us(100));
    assert_eq!(outcome.vote(0), Vote::Failed(NodeError::Closed));
    assert_eq!(outcome.unread(0), 0);
}

#[test]
fn slow_or_lagging_nodes_carry_their_own_script_load() {
    let t0 = Instant::now();
    let mut round = Round::new(
        setup(3, Wait::AllHealthy),
        &[40_000, 50_000, 9_000_000],
        NodeSet::default(),
    );
    assert!(!round.preloads(0, false));
    assert!(round.preloads(0, true), "lagging");
    assert!(round.preloads(2, false), "slow");
    round.start(t0);
    round.sent(0, false, false);
    round.sent(1, false, false);
    round.sent(2, true, false);
    for _ in 0..2 {
        read(&mut round, t0);
        round.heard(Answer::Yes, t0, t0 + us(50));
    }
    // Decided; node 2 is slow and polled, and a NOSCRIPT now would not be reloaded again.
    let (node, until, reloading) = read(&mut round, t0 + us(50));
    assert_eq!((node, until, reloading), (2, t0 + us(50), true));
    round.heard(
        Answer::Failed(NodeError::Timeout(Phase::Read)),
        t0,
        t0 + us(50),
    );
    let outcome = round.finish(t0 + us(50));
    assert_eq!(outcome.vote(2), Vote::NotAwaited);
    assert!(outcome.reloaded.contains(2));
    // Nothing read of node 2: both the SCRIPT LOAD reply and the command's are skipped later.
    let unread = Round::new(setup(1, Wait::UntilDecided), &[0], NodeSet::default());
    let mut unread = unread;
    unread.start(t0);
    unread.sent(0, true, false);
    assert_eq!(unread.finish(t0).unread(0), 2);
    let plain = Setup {
        scripted: false,
        ..setup(1, Wait::UntilDecided)
    };
    assert!(!Round::new(plain, &[9_000_000], NodeSet::default()).preloads(0, true));
}

#[test]
fn every_read_shares_the_deadline_and_a_late_answer_is_a_timeout() {
    let t0 = Instant::now();
    let mut round = sent_to_all(setup(3, Wait::UntilDecided), &[10, 20, 30], t0);
    let mut deadlines = Vec::new();
    for at in [1, 2] {
        let (_, until, _) = read(&mut round, t0 + Duration::from_millis(at));
        deadlines.push(until);
        let now = t0 + TIMEOUT;
        round.heard(Answer::Failed(NodeError::Timeout(Phase::Read)), now, now);
    }
    assert_eq!(deadlines, [t0 + TIMEOUT, t0 + TIMEOUT]);
    assert_eq!(round.next(t0 + TIMEOUT), Step::Done, "no quorum possible");
    let outcome = round.finish(t0 + TIMEOUT);
    assert_eq!(outcome.failures(|_| String::new()).len(), 2);
    assert_eq!(outcome.unread(2), 1);
}

#[test]
fn a_node_owing_too_many_replies_is_held_back_from_locks_only() {
    let locking = Setup {
        locking: true,
        ..setup(3, Wait::UntilDecided)
    };
    let round = Round::new(locking, &[0, 0, 0], NodeSet::default());
    assert!(!round.holds_back(MAX_OWED - 1));
    assert!(round.holds_back(MAX_OWED));
    let release = Round::new(setup(3, Wait::AllHealthy), &[0, 0, 0], NodeSet::default());
    assert!(!release.holds_back(u32::MAX), "releases always go out");
}

#[test]
fn every_vote_kind_is_reported() {
    let t0 = Instant::now();
    let latency: Vec<u64> = (1..=10).map(|n| n * 10_000).collect();
    let mut round = Round::new(setup(10, Wait::UntilDecided), &latency, NodeSet::default());
    round.start(t0);
    // Node 0 untouched, node 1 failed before sending; 2..=9 sent. Quorum 6.
    round.failed(1, NodeError::HeldBack);
    for node in 2..10 {
        round.sent(node, false, false);
    }
    let answers = [
        Answer::Yes,
        Answer::No,
        Answer::Failed(NodeError::Closed),
        Answer::Broken(NodeError::UnexpectedReply),
    ];
    for answer in answers {
        read(&mut round, t0);
        round.heard(answer, t0, t0 + us(10));
    }
    // 1 yes and 4 pending can no longer make 6: nodes 6..=9 are left unread.
    assert_eq!(round.next(t0 + us(10)), Step::Done);
    let outcome = round.finish(t0 + us(10));
    let votes: Vec<Vote> = (0..7).map(|n| outcome.vote(n)).collect();
    assert_eq!(
        votes,
        [
            Vote::Untouched,
            Vote::Failed(NodeError::HeldBack),
            Vote::Yes,
            Vote::No,
            Vote::Failed(NodeError::Closed),
            Vote::Failed(NodeError::UnexpectedReply),
            Vote::Pending,
        ]
    );
    let failed: Vec<usize> = outcome
        .failures(|n| n.to_string())
        .iter()
        .map(|f| f.node)
        .collect();
    assert_eq!(failed, [1, 4, 5]);
    assert_eq!(outcome.unheard(), 7);
    assert_eq!(outcome.vote(99), Vote::Untouched);
}

#[test]
fn a_read_after_a_stall_does_not_count_as_latency() {
    let t0 = Instant::now();
    let mut round = sent_to_all(setup(3, Wait::AllHealthy), &[10, 20, 30], t0);
    read(&mut round, t0);
    // The first read waited 5 ms: the round stalled on node 0.
    let heard = round.heard(Answer::Yes, t0, t0 + Duration::from_millis(5));
    assert_eq!(heard.sample, Some(Duration::from_millis(5)));
    read(&mut round, t0 + Duration::from_millis(5));
    // Node 1's reply was already there: it says nothing about node 1.
    let at = t0 + Duration::from_millis(5);
    let heard = round.heard(Answer::Yes, at, at + us(5));
    assert_eq!(heard.sample, None);
}

#[test]
fn the_slow_set_is_relative_to_the_quorum() {
    let t0 = Instant::now();
    let slow = |latency_us: &[u64]| {
        sent_to_all(setup(latency_us.len(), Wait::AllHealthy), latency_us, t0).slow()
    };
    let set = |nodes: &[usize]| {
        let mut set = NodeSet::default();
        for &n in nodes {
            set.insert(n);
        }
        set
    };
    // Quorum of 3: the third fastest is 50 us, so the threshold is 1.2 ms.
    assert_eq!(slow(&[40, 45, 50, 1100, 5000]), set(&[4]));
    assert_eq!(slow(&[40, 6250, 50, 45, 6250]), set(&[1, 4]));
    // Three slow nodes: the quorum itself is slow, so nobody is skipped.
    assert!(slow(&[40, 6250, 6250, 45, 6250]).is_empty());
    // One node is never slow against itself.
    assert!(slow(&[50_000]).is_empty());
}
