//! Where a text holds any of a set of literals, in one pass.
//!
//! The token check reads every byte of every input (`Redactor::candidate`):
//! ~100 literals, the detectors' anchors, the two escapes that could hide a
//! token and the `://` of a URL. Teddy (aho-corasick's packed searchers)
//! takes them in three passes, 16 or 32 bytes a step, and fingerprints a
//! byte by its two nibbles, so a bucket holding literals that start with `g`
//! (0x67) and `p` (0x70) also lets `w` (0x77) and `` ` `` (0x60) through:
//! 2.7 GB/s on CloudTrail, a tenth of a run (benches/README.md, session 27).
//!
//! This is the same idea, shaped for AVX-512 VBMI: `vpermi2b` looks a byte
//! up in a 128-entry table, so a fingerprint holds exact ASCII bytes, not
//! nibbles, and one step reads 64 positions. A literal's first [`K`] bytes
//! (fewer for a shorter one; the rest match anything) put its bucket's bit
//! in [`K`] tables, one per offset; a position whose bytes leave some bit
//! set in all of them is a hit, and the literals of the buckets left set are
//! compared there. 16 buckets take two tables per offset. Literals are put
//! in buckets so that the buckets let the least text through, judged by a
//! coarse model of JSON text ([`weight`]): the choice of the literals, not
//! of a corpus.
//!
//! Where the CPU lacks AVX-512 VBMI, [`Prefilter::new`] says so and the
//! caller keeps its Teddy searchers.

/// Fingerprint bytes: the longest literal prefix that one step compares.
const K: usize = 4;
/// Buckets: two tables of eight bits per offset.
const BUCKETS: usize = 16;

struct Lit {
    bytes: Box<[u8]>,
    /// The first (up to) eight bytes as a little-endian word, and the mask
    /// of the bytes it holds: one comparison rejects most hits.
    head: u64,
    mask: u64,
    /// The caller's index for it.
    id: usize,
}

impl Lit {
    #[inline]
    fn at(&self, text: &[u8], p: usize) -> bool {
        match text.get(p..p + 8) {
            Some(w) => {
                let w = u64::from_le_bytes(w.try_into().expect("eight bytes"));
                w & self.mask == self.head && (self.bytes.len() <= 8 || text[p..].starts_with(&self.bytes))
            }
            None => text[p..].starts_with(&self.bytes),
        }
    }
}

pub(crate) struct Prefilter {
    /// Sorted by bucket.
    lits: Vec<Lit>,
    /// Each bucket's range of `lits`.
    ranges: [(u16, u16); BUCKETS],
    /// For offset `k` and table `t`: bit `b` of entry `c` says whether a
    /// literal of bucket `8 t + b` allows byte `c` (or `c | 0x80`) at `k`.
    tables: Box<[[[u8; 128]; 2]; K]>,
}

/// How often byte `c` turns up in JSON audit records, in a coarse model:
/// lower-case letters most, then JSON's punctuation, digits, capitals. It
/// only ranks one way of putting literals in buckets above another.
fn weight(c: u8) -> f64 {
    match c {
        b'a'..=b'z' => 1.0,
        b'"' | b':' | b',' | b' ' | b'.' | b'/' | b'-' | b'_' | b'{' | b'}' | b'[' | b']' => 0.8,
        b'0'..=b'9' => 0.5,
        b'A'..=b'Z' => 0.3,
        0..=127 => 0.1,
        _ => 0.05,
    }
}

/// The bytes a bucket allows at each offset (bit `c & 127`), or `None`
/// where one of its literals is too short to say.
#[derive(Clone, Copy)]
struct Sets([Option<u128>; K]);

impl Sets {
    fn of(lit: &[u8]) -> Sets {
        Sets(std::array::from_fn(|k| lit.get(k).map(|c| 1u128 << (c & 127))))
    }

    fn union(self, o: Sets) -> Sets {
        Sets(std::array::from_fn(|k| self.0[k].zip(o.0[k]).map(|(a, b)| a | b)))
    }

    /// The share of positions of text (by [`weight`]) these sets let through.
    fn pass(self, p: &[f64; 128]) -> f64 {
        let share = |mut s: u128| {
            let mut sum = 0.0;
            while s != 0 {
                sum += p[s.trailing_zeros() as usize];
                s &= s - 1;
            }
            sum
        };
        self.0.iter().map(|s| s.map_or(1.0, share)).product()
    }
}

/// Groups `windows` into at most `n` buckets, merging at each step the two
/// groups whose union lets the least more text through.
fn group(windows: &[Sets], n: usize) -> Vec<usize> {
    let total: f64 = (0..=255u8).map(weight).sum();
    let mut p = [0.0; 128];
    for c in 0..=255u8 {
        p[(c & 127) as usize] += weight(c) / total;
    }
    let mut groups: Vec<(Sets, f64, Vec<usize>)> =
        windows.iter().enumerate().map(|(i, s)| (*s, s.pass(&p), vec![i])).collect();
    let cost = |a: &(Sets, f64, Vec<usize>), b: &(Sets, f64, Vec<usize>)| a.0.union(b.0).pass(&p) - a.1 - b.1;
    let mut delta: Vec<Vec<f64>> = (0..groups.len())
        .map(|i| (0..groups.len()).map(|j| if j > i { cost(&groups[i], &groups[j]) } else { f64::INFINITY }).collect())
        .collect();
    while groups.len() > n {
        let (mut bi, mut bj) = (0, 1);
        for i in 0..groups.len() {
            for j in i + 1..groups.len() {
                if delta[i][j] < delta[bi][bj] {
                    (bi, bj) = (i, j);
                }
            }
        }
        let (sets, _, members) = groups.remove(bj);
        delta.remove(bj);
        for row in &mut delta {
            row.remove(bj);
        }
        let g = &mut groups[bi];
        g.0 = g.0.union(sets);
        g.1 = g.0.pass(&p);
        g.2.extend(members);
        for j in 0..groups.len() {
            let d = if j == bi { f64::INFINITY } else { cost(&groups[bi.min(j)], &groups[bi.max(j)]) };
            delta[bi.min(j)][bi.max(j)] = d;
        }
    }
    let mut bucket = vec![0; windows.len()];
    for (b, g) in groups.iter().enumerate() {
        for &i in &g.2 {
            bucket[i] = b;
        }
    }
    bucket
}

impl Prefilter {
    /// A prefilter for `lits` (none empty), or `None` where this CPU has no
    /// AVX-512 VBMI.
    pub(crate) fn new(lits: &[Vec<u8>]) -> Option<Prefilter> {
        if !Self::supported() || lits.is_empty() || lits.iter().any(|l| l.is_empty()) {
            return None;
        }
        Some(Self::build(lits))
    }

    fn supported() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512bw") && std::arch::is_x86_feature_detected!("avx512vbmi")
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    fn build(lits: &[Vec<u8>]) -> Prefilter {
        let windows: Vec<Sets> = lits.iter().map(|l| Sets::of(l)).collect();
        let bucket = group(&windows, BUCKETS);
        let mut order: Vec<usize> = (0..lits.len()).collect();
        order.sort_by_key(|&i| (bucket[i], i));
        let mut tables = Box::new([[[0u8; 128]; 2]; K]);
        let mut ranges = [(0u16, 0u16); BUCKETS];
        let mut sorted = Vec::with_capacity(lits.len());
        for &i in &order {
            let (b, l) = (bucket[i], &lits[i]);
            let (t, bit) = (b / 8, 1u8 << (b % 8));
            for (k, table) in tables.iter_mut().enumerate() {
                match l.get(k) {
                    Some(&c) => table[t][(c & 127) as usize] |= bit,
                    None => table[t].iter_mut().for_each(|e| *e |= bit),
                }
            }
            let n = l.len().min(8);
            let mut head = [0u8; 8];
            head[..n].copy_from_slice(&l[..n]);
            let mask = if n == 8 { u64::MAX } else { (1u64 << (8 * n)) - 1 };
            if ranges[b] == (0, 0) {
                ranges[b] = (sorted.len() as u16, sorted.len() as u16);
            }
            ranges[b].1 += 1;
            sorted.push(Lit { bytes: l.clone().into(), head: u64::from_le_bytes(head), mask, id: i });
        }
        Prefilter { lits: sorted, ranges, tables }
    }

    /// Calls `on(at, id)` for each occurrence of a literal in `text` (`id`:
    /// its index in the list given to [`Prefilter::new`]), in order of
    /// position, until `on` returns true; says whether it did.
    pub(crate) fn find(&self, text: &[u8], on: impl FnMut(usize, usize) -> bool) -> bool {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `new` built this only where the CPU has both features.
        unsafe {
            self.find_avx512(text, on)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (text, on);
            unreachable!("built only on x86_64")
        }
    }

    /// The literals of the buckets in `bits` that occur at `p`.
    #[inline]
    fn verify(&self, text: &[u8], p: usize, mut bits: u32, on: &mut impl FnMut(usize, usize) -> bool) -> bool {
        while bits != 0 {
            let (s, e) = self.ranges[bits.trailing_zeros() as usize];
            bits &= bits - 1;
            for l in &self.lits[s as usize..e as usize] {
                if l.at(text, p) && on(p, l.id) {
                    return true;
                }
            }
        }
        false
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512bw,avx512vbmi")]
    unsafe fn find_avx512(&self, text: &[u8], mut on: impl FnMut(usize, usize) -> bool) -> bool {
        use std::arch::x86_64::*;
        let load = |t: &[u8; 128], half: usize| {
            // SAFETY: 64 of the table's 128 bytes.
            unsafe { _mm512_loadu_si512(t.as_ptr().add(64 * half).cast()) }
        };
        let tables: [[[__m512i; 2]; 2]; K] =
            std::array::from_fn(|k| std::array::from_fn(|t| std::array::from_fn(|h| load(&self.tables[k][t], h))));
        // Bucket bits for the 64 positions from `p`, which must be readable
        // for 63 + K bytes.
        let step = |p: *const u8| {
            let (mut a, mut b) = (_mm512_set1_epi8(-1), _mm512_set1_epi8(-1));
            for (k, t) in tables.iter().enumerate() {
                // SAFETY: within the 63 + K bytes the caller vouches for.
                let v = unsafe { _mm512_loadu_si512(p.add(k).cast()) };
                a = _mm512_and_si512(a, _mm512_permutex2var_epi8(t[0][0], v, t[0][1]));
                b = _mm512_and_si512(b, _mm512_permutex2var_epi8(t[1][0], v, t[1][1]));
            }
            (a, b)
        };
        let n = text.len();
        let mut pad = [0u8; 64 + K];
        let mut i = 0;
        while i < n {
            let (p, valid) = if n - i >= 63 + K {
                (text[i..].as_ptr(), u64::MAX)
            } else {
                // The last positions: zeros after the text match no literal
                // byte, only offsets past a short literal's end, and the
                // comparison then looks at the text alone.
                let rest = n - i;
                pad.fill(0);
                pad[..rest].copy_from_slice(&text[i..]);
                (pad.as_ptr(), if rest >= 64 { u64::MAX } else { (1u64 << rest) - 1 })
            };
            let (a, b) = step(p);
            let mut hits = _mm512_test_epi8_mask(_mm512_or_si512(a, b), _mm512_or_si512(a, b)) & valid;
            if hits != 0 {
                let (mut lo, mut hi) = ([0u8; 64], [0u8; 64]);
                // SAFETY: 64-byte stores into 64-byte arrays.
                unsafe {
                    _mm512_storeu_si512(lo.as_mut_ptr().cast(), a);
                    _mm512_storeu_si512(hi.as_mut_ptr().cast(), b);
                }
                while hits != 0 {
                    let j = hits.trailing_zeros() as usize;
                    hits &= hits - 1;
                    if self.verify(text, i + j, u32::from(lo[j]) | u32::from(hi[j]) << 8, &mut on) {
                        return true;
                    }
                }
            }
            i += 64;
        }
        false
    }

    /// The buckets whose fingerprints allow the (up to) [`K`] bytes at `p`,
    /// read one table entry at a time: what a step of `find_avx512`
    /// computes for one position, for the tests to hold it to.
    #[cfg(test)]
    fn bits_at(&self, text: &[u8], p: usize) -> u32 {
        let mut bits = u32::MAX;
        for (k, t) in self.tables.iter().enumerate() {
            let c = (text.get(p + k).copied().unwrap_or(0) & 127) as usize;
            bits &= u32::from(t[0][c]) | u32::from(t[1][c]) << 8;
        }
        bits & 0xFFFF
    }

    /// `find` one position at a time, with no SIMD: the same tables and
    /// comparisons, for machines without AVX-512 VBMI to test.
    #[cfg(test)]
    fn find_scalar(&self, text: &[u8], mut on: impl FnMut(usize, usize) -> bool) -> bool {
        (0..text.len()).any(|p| self.verify(text, p, self.bits_at(text, p), &mut on))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every occurrence, by brute force.
    fn naive(lits: &[Vec<u8>], text: &[u8]) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for p in 0..text.len() {
            for (i, l) in lits.iter().enumerate() {
                if text[p..].starts_with(l) {
                    out.push((p, i));
                }
            }
        }
        out
    }

    fn all(pf: &Prefilter, text: &[u8], simd: bool) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let on = |at, id| {
            out.push((at, id));
            false
        };
        if simd {
            pf.find(text, on)
        } else {
            pf.find_scalar(text, on)
        };
        out.sort();
        out
    }

    /// Literals over a small alphabet (so they overlap, share prefixes and
    /// turn up by chance), with bytes that alias in the 7-bit tables (`a`
    /// and `0xE1`) and a NUL, as the padding after a text holds.
    fn alphabet() -> impl Strategy<Value = u8> {
        prop::sample::select(vec![b'a', b'b', b'c', b'/', b'\\', b'u', 0xE1, 0, b'x'])
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        #[test]
        fn every_occurrence_is_found_and_nothing_else(
            lits in prop::collection::vec(prop::collection::vec(alphabet(), 1..10), 1..40),
            text in prop::collection::vec(alphabet(), 0..300),
            planted in prop::collection::vec((0usize..300, 0usize..40), 0..8),
        ) {
            let mut text = text;
            for (at, which) in planted {
                let l = &lits[which % lits.len()];
                let at = at.min(text.len());
                text.splice(at..at, l.iter().copied());
            }
            let pf = Prefilter::build(&lits);
            let want = naive(&lits, &text);
            prop_assert_eq!(all(&pf, &text, false), want.clone());
            if Prefilter::supported() {
                prop_assert_eq!(all(&pf, &text, true), want);
            }
        }
    }

    /// Each length from empty to a few steps long, a literal at every
    /// position: the first and last positions of a step, the padded tail,
    /// and a literal running to the text's last byte.
    #[test]
    fn literals_are_found_at_every_position_of_every_length() {
        let lits: Vec<Vec<u8>> = vec![b"SK".to_vec(), b"://".to_vec(), b"ghp_".to_vec(), b"github_pat_".to_vec()];
        let pf = Prefilter::build(&lits);
        for n in 0..200usize {
            for (id, l) in lits.iter().enumerate() {
                for at in 0..=n.saturating_sub(l.len()) {
                    if at + l.len() > n {
                        continue;
                    }
                    let mut text = vec![b'x'; n];
                    text[at..at + l.len()].copy_from_slice(l);
                    for simd in [false, true] {
                        if simd && !Prefilter::supported() {
                            continue;
                        }
                        assert_eq!(all(&pf, &text, simd), vec![(at, id)], "n {n}, {l:?} at {at}, simd {simd}");
                    }
                }
            }
            // The prefix of a literal cut by the text's end is no occurrence.
            let mut text = vec![b'x'; n];
            if n >= 3 {
                text[n - 3..].copy_from_slice(b"ghp");
            }
            assert!(all(&pf, &text, false).is_empty());
            if Prefilter::supported() {
                assert!(all(&pf, &text, true).is_empty(), "n {n}");
            }
        }
    }

    #[test]
    fn finding_stops_where_asked() {
        let pf = Prefilter::build(&[b"ab".to_vec()]);
        let text = b"ab ab ab".repeat(40);
        for simd in [false, true] {
            if simd && !Prefilter::supported() {
                continue;
            }
            let mut seen = 0;
            let on = |_, _| {
                seen += 1;
                seen == 3
            };
            let found = if simd { pf.find(&text, on) } else { pf.find_scalar(&text, on) };
            assert!(found);
            assert_eq!(seen, 3);
        }
    }

    /// The buckets are chosen by the literals alone, and let through less
    /// of a JSON record than one bucket per sixteenth of the list in order.
    #[test]
    fn buckets_keep_unlike_literals_apart() {
        let lits: Vec<Vec<u8>> = crate::redact::builtin_anchors().expect("every built-in pattern has an anchor");
        let pf = Prefilter::build(&lits);
        let text = br#"{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole","accountId":"123456789012","arn":"arn:aws:sts::123456789012:assumed-role/Admin/alice"},"eventSource":"s3.amazonaws.com","recipientAccountId":"123456789012","tlsDetails":{"clientProvidedHostHeader":"github.com"}}"#;
        let hits = (0..text.len()).filter(|&p| pf.bits_at(text, p) != 0).count();
        let naive = {
            let bucket: Vec<usize> = (0..lits.len()).map(|i| i * BUCKETS / lits.len()).collect();
            let sets: Vec<Sets> = (0..BUCKETS)
                .map(|b| {
                    let mut s: Option<Sets> = None;
                    for (i, l) in lits.iter().enumerate() {
                        if bucket[i] == b {
                            s = Some(s.map_or(Sets::of(l), |s| s.union(Sets::of(l))));
                        }
                    }
                    s.expect("every bucket has a literal")
                })
                .collect();
            (0..text.len())
                .filter(|&p| {
                    sets.iter().any(|s| {
                        s.0.iter().enumerate().all(|(k, set)| {
                            set.is_none_or(|set| set >> (text.get(p + k).copied().unwrap_or(0) & 127) & 1 == 1)
                        })
                    })
                })
                .count()
        };
        assert!(hits < naive, "{hits} hits, {naive} in list order");
    }
}
