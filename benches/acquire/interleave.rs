//! Interleaved timing: every variant of a comparison runs one block of operations per round,
//! starting from a different variant each round, so load from other processes hits all of them
//! alike.
//!
//! Variants are registered with a key (an enum or struct of the section) and looked up by it
//! afterwards, never by position.

use std::fmt::Debug;
use std::time::Instant;

use crate::baseline::Baseline;
use crate::stats::Samples;
use crate::WARM_UP;

/// A timed operation. It returns false when it failed only because nodes timed out.
type Op<'a> = Box<dyn FnMut() -> bool + 'a>;

struct Variant<'a, K> {
    key: K,
    samples: Samples,
    op: Op<'a>,
}

/// The variants of one interleaved comparison, in registration (and printing) order.
pub struct Interleaved<'a, K> {
    variants: Vec<Variant<'a, K>>,
    capacity: usize,
}

impl<'a, K: Copy + Eq + Debug> Interleaved<'a, K> {
    /// `capacity`: timed operations expected per variant.
    pub fn new(capacity: usize) -> Self {
        Self {
            variants: Vec::new(),
            capacity,
        }
    }

    /// Adds a variant labelled `name` in the tables.
    pub fn add(&mut self, key: K, name: String, op: impl FnMut() -> bool + 'a) {
        assert!(
            self.variants.iter().all(|variant| variant.key != key),
            "variant {key:?} added twice"
        );
        self.variants.push(Variant {
            key,
            samples: Samples::new(name, self.capacity),
            op: Box::new(op),
        });
    }

    /// Adds a baseline variant (whose operations panic rather than time out).
    pub fn add_baseline(&mut self, key: K, name: String, baseline: &'a mut Baseline) {
        self.add(key, name, move || {
            baseline.op();
            true
        });
    }

    /// Warms every variant up, then runs `blocks` rounds; in each round every variant runs one
    /// block of `block` timed operations, starting from a different variant each round. The
    /// operations (and what they borrow) are dropped before the samples are returned.
    pub fn run(mut self, blocks: usize, block: usize) -> Measured<K> {
        for variant in &mut self.variants {
            for _ in 0..WARM_UP {
                (variant.op)();
            }
        }
        let count = self.variants.len();
        let mut scratch = Vec::with_capacity(block);
        for round in 0..blocks {
            for k in 0..count {
                let Variant { samples, op, .. } = &mut self.variants[(round + k) % count];
                scratch.clear();
                for _ in 0..block {
                    let start = Instant::now();
                    let done = op();
                    scratch.push(start.elapsed().as_nanos() as u64);
                    samples.timed_out += u64::from(!done);
                }
                samples.push_block(&mut scratch);
            }
        }
        Measured {
            entries: self
                .variants
                .into_iter()
                .map(|variant| (variant.key, variant.samples))
                .collect(),
        }
    }
}

/// The samples of an interleaved run, by key.
pub struct Measured<K> {
    entries: Vec<(K, Samples)>,
}

impl<K: Copy + Eq + Debug> Measured<K> {
    /// The samples of the variant added with `key`.
    pub fn get(&self, key: K) -> &Samples {
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, samples)| samples)
            .unwrap_or_else(|| panic!("no variant {key:?} was measured"))
    }

    /// Every variant's samples, in the order they were added.
    pub fn all(&self) -> impl Iterator<Item = &Samples> {
        self.entries.iter().map(|(_, samples)| samples)
    }
}
