//! Eight bytes at a time in a `u64`, for the short scans the decoders run on
//! every string (too short for memchr's vector set-up to pay).
//!
//! Each mask has the high bit of a flagged byte set. A mask is exact at its
//! lowest flagged byte only (a borrow can flag bytes above it), which is all
//! the scans use: the position of the first hit.

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The eight bytes of `s` from `at`, first byte lowest.
#[inline(always)]
pub fn load(s: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"))
}

/// Bytes of `v` equal to `b`.
#[inline(always)]
pub fn eq(v: u64, b: u8) -> u64 {
    let x = v ^ (LO * b as u64);
    x.wrapping_sub(LO) & !x & HI
}

/// Bytes of `v` below `n` (`n` ≤ 0x80; bytes ≥ 0x80 are never flagged).
#[inline(always)]
pub fn below(v: u64, n: u8) -> u64 {
    v.wrapping_sub(LO * n as u64) & !v & HI
}

/// The index of the first flagged byte of a non-zero mask.
#[inline(always)]
pub fn first(mask: u64) -> usize {
    (mask.trailing_zeros() / 8) as usize
}
