//! Loss, duplicate and reordering accounting for one stream of sequence
//! numbers (one publisher's events on one key, as seen by one subscriber).
//!
//! It keeps the next expected number and the gaps still open, so it tells a
//! late event (reordered: it fills a gap) from a duplicate (seen before)
//! exactly, with no allocation while the stream is in order.

/// What one observed sequence number was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// The next one expected.
    InOrder,
    /// Newer than expected: some before it are missing (so far).
    Gap,
    /// Older than one already seen, and not seen before: reordered.
    Late,
    /// Seen before.
    Duplicate,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct SeqTracker {
    next: u64,
    /// Open gaps as half-open ranges `[start, end)`, in increasing order.
    missing: Vec<(u64, u64)>,
    unique: u64,
    duplicates: u64,
    late: u64,
}

impl SeqTracker {
    pub(crate) fn observe(&mut self, seq: u64) -> Seen {
        use std::cmp::Ordering;
        match seq.cmp(&self.next) {
            Ordering::Equal => {
                self.next = seq + 1;
                self.unique += 1;
                Seen::InOrder
            }
            Ordering::Greater => {
                self.missing.push((self.next, seq));
                self.next = seq + 1;
                self.unique += 1;
                Seen::Gap
            }
            Ordering::Less => {
                // Gaps are few; search from the newest, where late events land.
                let found = self.missing.iter().rposition(|&(a, b)| a <= seq && seq < b);
                let Some(i) = found else {
                    self.duplicates += 1;
                    return Seen::Duplicate;
                };
                let Some(&(a, b)) = self.missing.get(i) else {
                    self.duplicates += 1;
                    return Seen::Duplicate;
                };
                match (seq == a, seq + 1 == b) {
                    (true, true) => {
                        self.missing.remove(i);
                    }
                    (true, false) => {
                        if let Some(r) = self.missing.get_mut(i) {
                            r.0 = seq + 1;
                        }
                    }
                    (false, true) => {
                        if let Some(r) = self.missing.get_mut(i) {
                            r.1 = seq;
                        }
                    }
                    (false, false) => {
                        if let Some(r) = self.missing.get_mut(i) {
                            r.1 = seq;
                        }
                        self.missing.insert(i + 1, (seq + 1, b));
                    }
                }
                self.unique += 1;
                self.late += 1;
                Seen::Late
            }
        }
    }

    /// Distinct sequence numbers seen.
    #[cfg(test)]
    pub(crate) fn unique(&self) -> u64 {
        self.unique
    }

    pub(crate) fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Events that arrived after a newer one of the same stream.
    pub(crate) fn reordered(&self) -> u64 {
        self.late
    }

    /// Events lost when `published` events (sequence `0..published`) were
    /// accepted by the server.
    #[cfg(test)]
    pub(crate) fn lost(&self, published: u64) -> u64 {
        self.lost_of(published, &[])
    }

    /// Whether `seq` was seen.
    pub(crate) fn has_seen(&self, seq: u64) -> bool {
        seq < self.next && !self.missing.iter().any(|&(a, b)| a <= seq && seq < b)
    }

    /// Of `0..sent`, the numbers that were never seen, leaving out those
    /// in `uncertain`: events whose publish may or may not have stored them.
    pub(crate) fn lost_of(&self, sent: u64, uncertain: &[u64]) -> u64 {
        let certain = sent.saturating_sub(uncertain.len() as u64);
        certain.saturating_sub(self.unique_certain(uncertain))
    }

    /// Distinct numbers seen, leaving out those in `uncertain`.
    pub(crate) fn unique_certain(&self, uncertain: &[u64]) -> u64 {
        let seen_uncertain = uncertain.iter().filter(|&&seq| self.has_seen(seq)).count();
        self.unique.saturating_sub(seen_uncertain as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seqs: &[u64]) -> (SeqTracker, Vec<Seen>) {
        let mut t = SeqTracker::default();
        let seen = seqs.iter().map(|&s| t.observe(s)).collect();
        (t, seen)
    }

    #[test]
    fn in_order() {
        let (t, seen) = run(&[0, 1, 2, 3]);
        assert!(seen.iter().all(|s| *s == Seen::InOrder));
        assert_eq!(
            (t.unique(), t.duplicates(), t.reordered(), t.lost(4)),
            (4, 0, 0, 0)
        );
        assert_eq!(t.lost(6), 2, "the last two never arrived");
        assert!(t.missing.capacity() == 0, "no allocation in order");
    }

    #[test]
    fn loss_in_the_middle() {
        let (t, seen) = run(&[0, 3, 4]);
        assert_eq!(seen, vec![Seen::InOrder, Seen::Gap, Seen::InOrder]);
        assert_eq!(
            (t.unique(), t.duplicates(), t.reordered(), t.lost(5)),
            (3, 0, 0, 2)
        );
    }

    #[test]
    fn reorder_fills_gaps_then_duplicates() {
        let (t, seen) = run(&[0, 5, 2, 1, 4, 3, 3, 5, 0, 6]);
        assert_eq!(
            seen,
            vec![
                Seen::InOrder,
                Seen::Gap,
                Seen::Late,
                Seen::Late,
                Seen::Late,
                Seen::Late,
                Seen::Duplicate,
                Seen::Duplicate,
                Seen::Duplicate,
                Seen::InOrder
            ]
        );
        assert_eq!(
            (t.unique(), t.duplicates(), t.reordered(), t.lost(7)),
            (7, 3, 4, 0)
        );
        assert!(t.missing.is_empty());
    }

    #[test]
    fn uncertain_publishes_are_neither_lost_nor_duplicates() {
        // 0..5 sent; the publish of 2 failed in transit, the server may or
        // may not have stored it.
        let uncertain = [2];
        let (stored, _) = run(&[0, 1, 2, 3, 4]);
        assert_eq!(
            (
                stored.lost_of(5, &uncertain),
                stored.duplicates(),
                stored.unique_certain(&uncertain)
            ),
            (0, 0, 4)
        );
        let (not_stored, _) = run(&[0, 1, 3, 4]);
        assert_eq!(
            (
                not_stored.lost_of(5, &uncertain),
                not_stored.reordered(),
                not_stored.unique_certain(&uncertain)
            ),
            (0, 0, 4)
        );
        let (lost_one, _) = run(&[0, 3, 4]);
        assert_eq!(
            lost_one.lost_of(5, &uncertain),
            1,
            "1 was accepted and never arrived"
        );
        assert!(lost_one.has_seen(3) && !lost_one.has_seen(1) && !lost_one.has_seen(5));
    }

    #[test]
    fn several_gaps() {
        let (t, _) = run(&[1, 4, 8, 6, 0]);
        // missing now: 2,3 and 5,7
        assert_eq!(t.missing, vec![(2, 4), (5, 6), (7, 8)]);
        assert_eq!((t.unique(), t.reordered(), t.lost(9)), (5, 2, 4));
    }

    #[test]
    fn matches_a_set_model() {
        // Deterministic pseudo-random streams against a HashSet model.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..200 {
            let mut t = SeqTracker::default();
            let mut seen = std::collections::HashSet::new();
            let mut max: Option<u64> = None;
            let (mut dups, mut late) = (0, 0);
            for _ in 0..200 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let s = x % 64;
                let r = t.observe(s);
                if !seen.insert(s) {
                    dups += 1;
                    assert_eq!(r, Seen::Duplicate);
                } else if max.is_some_and(|m| s < m) {
                    late += 1;
                    assert_eq!(r, Seen::Late);
                }
                max = max.max(Some(s));
            }
            assert_eq!(t.unique(), seen.len() as u64);
            assert_eq!(t.duplicates(), dups);
            assert_eq!(t.reordered(), late);
            assert_eq!(t.lost(64), 64 - seen.len() as u64);
        }
    }
}
