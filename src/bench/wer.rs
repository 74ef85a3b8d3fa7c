//! Word error rate: how far an engine's transcript is from the reference, in words.
//!
//! Both texts go through `text_norm::normalize_words` first (case, punctuation, numbers
//! to words, contractions), so "I'm" against "i am" is two correct words.

use std::ops::AddAssign;

use crate::text_norm::normalize_words;

/// Edit counts of one or more transcripts against their references.
///
/// Invariant: `substitutions + deletions <= reference_words` (every reference word is
/// matched, substituted or deleted exactly once); insertions are unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WerCount {
    pub substitutions: usize,
    pub deletions: usize,
    pub insertions: usize,
    pub reference_words: usize,
}

impl WerCount {
    /// (S + D + I) / N as a fraction (0.25 = 25 %); may exceed 1.0 when the engine
    /// inserts many words. None when there are no reference words.
    pub fn wer(&self) -> Option<f64> {
        if self.reference_words == 0 {
            return None;
        }
        let errors = self.substitutions + self.deletions + self.insertions;
        Some(errors as f64 / self.reference_words as f64)
    }
}

impl AddAssign for WerCount {
    /// Pools counts, so the sum's `wer()` weighs each clip by its reference length.
    fn add_assign(&mut self, other: Self) {
        self.substitutions += other.substitutions;
        self.deletions += other.deletions;
        self.insertions += other.insertions;
        self.reference_words += other.reference_words;
    }
}

/// Minimum word edits turning `reference` into `hypothesis`, split into S, D and I.
///
/// Among equally short alignments the backtrace prefers a match or substitution, then
/// a deletion, then an insertion, so the split is deterministic.
pub fn count(reference: &str, hypothesis: &str) -> WerCount {
    let r = normalize_words(reference);
    let h = normalize_words(hypothesis);
    let cols = h.len() + 1;
    // dist[i * cols + j] = edits between the first i reference and first j hypothesis words.
    let mut dist = vec![0usize; (r.len() + 1) * cols];
    for (j, cell) in dist.iter_mut().enumerate().take(cols) {
        *cell = j;
    }
    for i in 1..=r.len() {
        dist[i * cols] = i;
        for j in 1..cols {
            let diagonal = dist[(i - 1) * cols + j - 1] + usize::from(r[i - 1] != h[j - 1]);
            let deletion = dist[(i - 1) * cols + j] + 1;
            let insertion = dist[i * cols + j - 1] + 1;
            dist[i * cols + j] = diagonal.min(deletion).min(insertion);
        }
    }

    let mut out = WerCount {
        reference_words: r.len(),
        ..WerCount::default()
    };
    let (mut i, mut j) = (r.len(), h.len());
    while i > 0 || j > 0 {
        let here = dist[i * cols + j];
        if i > 0 && j > 0 {
            let same = r[i - 1] == h[j - 1];
            if here == dist[(i - 1) * cols + j - 1] + usize::from(!same) {
                out.substitutions += usize::from(!same);
                i -= 1;
                j -= 1;
                continue;
            }
        }
        if i > 0 && here == dist[(i - 1) * cols + j] + 1 {
            out.deletions += 1;
            i -= 1;
        } else {
            out.insertions += 1;
            j -= 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdi(reference: &str, hypothesis: &str) -> (usize, usize, usize) {
        let c = count(reference, hypothesis);
        (c.substitutions, c.deletions, c.insertions)
    }

    #[test]
    fn identical_after_normalisation_is_zero() {
        let c = count("What is my balance?", "what is my balance");
        assert_eq!(c.reference_words, 4);
        assert_eq!(c.wer(), Some(0.0));
        assert_eq!(
            count("yes i am interested", "Yes, I'm interested.").wer(),
            Some(0.0)
        );
    }

    #[test]
    fn one_substitution() {
        assert_eq!(sdi("please call me back", "please call me bad"), (1, 0, 0));
        assert_eq!(
            count("please call me back", "please call me bad").wer(),
            Some(0.25)
        );
    }

    #[test]
    fn one_deletion_and_one_insertion() {
        assert_eq!(sdi("what is my balance", "what my balance"), (0, 1, 0));
        assert_eq!(
            sdi("what is my balance", "so what is my balance"),
            (0, 0, 1)
        );
        assert_eq!(sdi("call me back", "call me back now please"), (0, 0, 2));
    }

    #[test]
    fn mixed_edits() {
        // One of "call"/"me" substituted by "fall", the other deleted; "now" inserted.
        assert_eq!(
            sdi(
                "please call me back tomorrow",
                "please fall back tomorrow now"
            ),
            (1, 1, 1)
        );
        let c = count(
            "please call me back tomorrow",
            "please fall back tomorrow now",
        );
        assert_eq!(c.wer(), Some(0.6));
        // Equal-cost alignments resolve to substitutions first.
        assert_eq!(sdi("thank you goodbye", "yo goodbye bye"), (3, 0, 0));
    }

    #[test]
    fn empty_sides() {
        let c = count("please call me back tomorrow", "");
        assert_eq!(
            c,
            WerCount {
                substitutions: 0,
                deletions: 5,
                insertions: 0,
                reference_words: 5,
            }
        );
        assert_eq!(c.wer(), Some(1.0));
        let none = count("", "hello there");
        assert_eq!((none.insertions, none.reference_words), (2, 0));
        assert_eq!(none.wer(), None);
        assert_eq!(count("", "").wer(), None);
    }

    #[test]
    fn aggregation_weighs_by_reference_words() {
        let mut total = WerCount::default();
        total += count("what is my balance", "what is my balance"); // 0 of 4
        total += count("yes", "no"); // 1 of 1
        assert_eq!(total.reference_words, 5);
        assert_eq!(total.substitutions, 1);
        assert_eq!(total.wer(), Some(0.2));
    }
}
