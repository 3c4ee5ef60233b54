//! Integrity beside the data path: CloudTrail digest chains (what
//! `aws cloudtrail validate-logs` checks, and more), over S3 or a local copy,
//! and the same guarantee for trailship's own output.
//!
//! - [`digest`] parses one digest file and builds the string CloudTrail signs;
//! - [`keys`] loads CloudTrail's public keys and verifies signatures;
//! - [`store`] is where digests and log files are read from;
//! - [`validate`] walks the chains and gives every object a [`validate::Verdict`];
//! - [`chain`] writes trailship's own digest chain over its archive, and
//!   [`archive`] validates it with the same verdicts.

pub mod archive;
pub mod chain;
pub mod cloudtrail_api;
pub mod digest;
pub mod keys;
pub mod resume;
pub mod s3;
pub mod store;
pub mod validate;

use std::io::{BufRead, Read};

use sha2::{Digest as _, Sha256};

/// Why a gzip stream is not what CloudTrail writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GzipError {
    #[error("not gzip")]
    NotGzip,
    #[error("truncated or corrupt gzip stream")]
    Truncated,
    #[error("unexpected data after end of compressed stream")]
    TrailingData,
}

/// Inflates exactly one gzip member, feeding the bytes to `sink`, and
/// refuses anything after it. Only the first member is what CloudTrail
/// hashed: a reader that decodes further members (`gzip -d`,
/// `MultiGzDecoder`) would see events a forger appended while the hash
/// still matches.
pub fn gunzip_one_member(mut input: impl BufRead, mut sink: impl FnMut(&[u8])) -> Result<u64, GzipError> {
    let head = input.fill_buf().map_err(|_| GzipError::Truncated)?;
    if head.len() < 2 || head[0] != 0x1f || head[1] != 0x8b {
        return Err(GzipError::NotGzip);
    }
    let mut dec = flate2::bufread::GzDecoder::new(input);
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        match dec.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                sink(&buf[..n]);
                total += n as u64;
            }
            Err(_) => return Err(GzipError::Truncated),
        }
    }
    let mut rest = dec.into_inner();
    match rest.fill_buf() {
        Ok([]) => Ok(total),
        Ok(_) => Err(GzipError::TrailingData),
        Err(_) => Err(GzipError::Truncated),
    }
}

/// Why [`gunzip_held`] gives no text back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldGzip {
    /// Not one whole gzip member (what [`gunzip_one_member`] says of it).
    Bad(GzipError),
    /// One, but its content is longer than the bound.
    Over,
}

/// A gzip log file held in memory, read as [`gunzip_one_member`] reads it:
/// its member's content, at most `max` bytes, and that content's SHA-256.
/// One member is inflated in one libdeflate call (`source::gzip`); what
/// that declines is read by `gunzip_one_member`, which says why.
pub fn gunzip_held(bytes: &[u8], max: usize) -> Result<(Vec<u8>, [u8; 32]), HeldGzip> {
    let mut text = Vec::new();
    if crate::source::gzip::inflate_member(bytes, &mut text, max).is_some() {
        let sha = Sha256::digest(&text).into();
        return Ok((text, sha));
    }
    text.clear();
    let mut h = Sha256::new();
    let mut over = false;
    gunzip_one_member(bytes, |chunk| {
        h.update(chunk);
        over |= text.len() + chunk.len() > max;
        if !over {
            text.extend_from_slice(chunk);
        }
    })
    .map_err(HeldGzip::Bad)?;
    if over {
        return Err(HeldGzip::Over);
    }
    Ok((text, h.finalize().into()))
}

/// SHA-256 of a log file as CloudTrail's digests hash it, and as rows'
/// `trailship.source_object.sha256` holds it: of a gzip file, its first
/// member's content (whatever follows it is not hashed); of anything else,
/// its bytes.
pub fn log_file_sha256(mut input: impl BufRead) -> std::io::Result<[u8; 32]> {
    let mut h = Sha256::new();
    // Appended members, or a member cut short: what inflated is what a
    // digest could have hashed, and the reading reports the rest. Not gzip
    // (nothing consumed): the bytes as they are.
    if let Err(GzipError::NotGzip) = gunzip_one_member(&mut input, |b| h.update(b)) {
        hash_all(input, &mut h)?;
    }
    Ok(h.finalize().into())
}

/// SHA-256 of everything `r` holds.
pub(crate) fn sha256_of_reader(r: impl BufRead) -> std::io::Result<[u8; 32]> {
    let mut h = Sha256::new();
    hash_all(r, &mut h)?;
    Ok(h.finalize().into())
}

fn hash_all(mut r: impl BufRead, h: &mut Sha256) -> std::io::Result<()> {
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        h.update(buf);
        let n = buf.len();
        r.consume(n);
    }
}

/// `bytes` as one gzip member, in memory (a digest as CloudTrail stores it).
pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).expect("writing to memory");
    enc.finish().expect("writing to memory")
}

/// SHA-256 of the first gzip member's content.
pub fn sha256_of_gzip(input: impl BufRead) -> Result<[u8; 32], GzipError> {
    let mut h = Sha256::new();
    gunzip_one_member(input, |b| h.update(b))?;
    Ok(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::gzip as gz;

    #[test]
    fn a_held_log_file_is_its_one_members_content_within_the_bound() {
        let text = br#"{"Records":[{"eventID":"x"}]}"#.repeat(10);
        let sha: [u8; 32] = Sha256::digest(&text).into();
        assert_eq!(gunzip_held(&gz(&text), text.len()), Ok((text.clone(), sha)));
        assert_eq!(gunzip_held(&gz(&text), text.len() - 1), Err(HeldGzip::Over));
        let whole = gz(&text);
        assert_eq!(gunzip_held(&whole[..whole.len() - 5], 1 << 20), Err(HeldGzip::Bad(GzipError::Truncated)));
        let two = [whole.clone(), gz(b"appended")].concat();
        assert_eq!(gunzip_held(&two, 1 << 20), Err(HeldGzip::Bad(GzipError::TrailingData)));
        assert_eq!(gunzip_held(&text, 1 << 20), Err(HeldGzip::Bad(GzipError::NotGzip)));
    }

    #[test]
    fn a_log_files_hash_is_its_first_members_content() {
        let text = br#"{"Records":[]}"#;
        let want: [u8; 32] = Sha256::digest(text).into();
        assert_eq!(log_file_sha256(&gz(text)[..]).unwrap(), want);
        assert_eq!(log_file_sha256(&text[..]).unwrap(), want, "not gzip: its bytes");
        let mut appended = gz(text);
        appended.extend(gz(br#"{"Records":[{"forged":1}]}"#));
        assert_eq!(log_file_sha256(&appended[..]).unwrap(), want, "what follows the first member is not hashed");
        assert_eq!(log_file_sha256(&b""[..]).unwrap(), <[u8; 32]>::from(Sha256::digest(b"")));
    }
}
