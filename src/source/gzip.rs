//! gzip inputs. A stream that is one whole member, short enough to hold, is
//! inflated in one call by libdeflate, which keeps no window and hands out
//! no chunks: a quarter less time than streaming through zlib-rs on
//! CloudTrail's log files (benches/README.md, session 23). Everything else
//! (several members, a stream cut short or corrupt, one too long to hold)
//! is read by flate2's streaming decoder, from the same bytes, so that what
//! it tells apart (a truncated stream from a corrupt one, appended members)
//! is told apart as before.

use std::io::{self, BufRead, Cursor, Read};

use flate2::bufread::MultiGzDecoder;

use super::Failing;

type Src = Box<dyn BufRead + Send>;
type Decoder = MultiGzDecoder<io::Chain<Cursor<Vec<u8>>, Failing<Src>>>;

/// Room for a member's header, trailer and optional name and comment.
const HEADER: usize = 4096;

/// A gzip stream's inflated bytes.
pub struct Gzip {
    state: State,
    /// The stream's length, when known: one too long to hold is not read
    /// into memory to find that out.
    len: Option<u64>,
}

enum State {
    Unread(Src),
    Streaming(Box<Decoder>),
    /// Inflated whole by [`Gzip::inflate_whole`].
    Done,
}

impl Gzip {
    pub fn new(src: Src, len: Option<u64>) -> Self {
        Gzip { state: State::Unread(src), len }
    }

    /// Inflates the whole stream into `out` (replacing what it held) when it
    /// is one complete member of at most `limit` inflated bytes; how many.
    /// `None` leaves the stream to be read, from its first byte, as a stream.
    pub fn inflate_whole(&mut self, out: &mut Vec<u8>, limit: usize) -> Option<usize> {
        // Deflate adds 5 bytes in 65,535 to what it cannot shrink, and the
        // header may carry a name: a member of `limit` bytes or fewer is no
        // longer than this, however little it compresses.
        let hold = limit.saturating_add(limit / 8192 + HEADER);
        if self.len.is_some_and(|n| n > hold as u64) {
            return None;
        }
        let mut src = self.take_unread()?;
        let mut held = Vec::with_capacity(self.len.map_or(0, |n| n as usize + 1));
        let read = src.by_ref().take(hold as u64 + 1).read_to_end(&mut held);
        let inflated = match read {
            Ok(n) if n <= hold => inflate_member(&held, out, limit),
            _ => None,
        };
        if inflated.is_none() {
            // What was read goes first, then the error, as if read in one stream.
            self.state = streaming(held, read.err(), src);
        }
        inflated
    }

    /// The source, if nothing has been read of it; the state is then `Done`
    /// until the caller sets it.
    fn take_unread(&mut self) -> Option<Src> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Unread(src) => Some(src),
            other => {
                self.state = other;
                None
            }
        }
    }
}

fn streaming(held: Vec<u8>, err: Option<io::Error>, rest: Src) -> State {
    State::Streaming(Box::new(MultiGzDecoder::new(Cursor::new(held).chain(Failing { err, rest }))))
}

impl Read for Gzip {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(src) = self.take_unread() {
            self.state = streaming(Vec::new(), None, src);
        }
        match &mut self.state {
            State::Streaming(d) => d.read(buf),
            // Inflated whole: nothing is left to read.
            _ => Ok(0),
        }
    }
}

/// `held` inflated into `out` (replacing what it held), if it is exactly
/// one gzip member whose trailer says it holds at most `limit` bytes, and
/// does; how many. `None`: anything else, for a streaming decoder to read or
/// to say what is wrong with it.
pub fn inflate_member(held: &[u8], out: &mut Vec<u8>, limit: usize) -> Option<usize> {
    let size = u32::from_le_bytes(held.get(held.len().checked_sub(4)?..)?.try_into().ok()?) as usize;
    if size > limit {
        return None;
    }
    out.clear();
    out.reserve(size);
    let (mut used, mut written) = (0usize, 0usize);
    // SAFETY: the decompressor is allocated, used once and freed here. The
    // input is `held`'s bytes; the output is `out`'s spare capacity, at least
    // `size` bytes, into which libdeflate writes at most `size` bytes and says
    // how many (`written`), which are the only ones `set_len` exposes.
    let result = unsafe {
        let d = libdeflate_sys::libdeflate_alloc_decompressor();
        if d.is_null() {
            return None;
        }
        let r = libdeflate_sys::libdeflate_gzip_decompress_ex(
            d,
            held.as_ptr().cast(),
            held.len(),
            out.as_mut_ptr().cast(),
            size,
            &mut used,
            &mut written,
        );
        libdeflate_sys::libdeflate_free_decompressor(d);
        if r == libdeflate_sys::libdeflate_result_LIBDEFLATE_SUCCESS {
            out.set_len(written);
        }
        r
    };
    // A second member (appended data) or trailing bytes: the streaming
    // decoder reads or rejects them.
    (result == libdeflate_sys::libdeflate_result_LIBDEFLATE_SUCCESS && used == held.len()).then_some(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;

    fn gz(text: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(text).unwrap();
        e.finish().unwrap()
    }

    /// What `inflate_whole` says, and what is read then (with the error, if any).
    fn whole(bytes: Vec<u8>, limit: usize) -> (Option<usize>, Vec<u8>) {
        let mut g = Gzip::new(Box::new(Cursor::new(bytes)), None);
        let mut out = b"left over".to_vec();
        let n = g.inflate_whole(&mut out, limit);
        if n.is_none() {
            out.clear();
        }
        if let Err(e) = g.read_to_end(&mut out) {
            out.extend_from_slice(format!("<{:?}>", e.kind()).as_bytes());
        }
        (n, out)
    }

    #[test]
    fn one_member_is_inflated_whole() {
        let text = b"{\"Records\":[]}\n".repeat(1000);
        assert_eq!(whole(gz(&text), text.len()), (Some(text.len()), text.clone()));
        assert_eq!(whole(gz(b""), 10), (Some(0), Vec::new()));
    }

    #[test]
    fn what_one_call_cannot_take_is_streamed_from_its_first_byte() {
        let (a, b) = (b"first member\n".repeat(50), b"second\n".repeat(70));
        // Appended members: both, in order (libdeflate stops after the first).
        let two = [gz(&a), gz(&b)].concat();
        assert_eq!(whole(two, 10_000), (None, [a.clone(), b].concat()));
        // Longer than the limit, held or inflated.
        assert_eq!(whole(gz(&a), a.len() - 1), (None, a.clone()));
        let noisy: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        assert_eq!(whole(gz(&noisy), 4000), (None, noisy));
        // Cut short: the streaming decoder's own error, after what it inflated.
        let mut cut = gz(&a);
        cut.truncate(cut.len() - 6);
        let (n, out) = whole(cut, 10_000);
        let read = out.strip_suffix(b"<UnexpectedEof>").expect("cut short");
        assert!(n.is_none() && a.starts_with(read));
        // A lying trailer (size too small): streamed, and read whole.
        let mut lie = gz(&a);
        let at = lie.len() - 4;
        lie[at..].copy_from_slice(&10u32.to_le_bytes());
        assert_eq!(whole(lie, 10_000).0, None);
    }

    /// What flate2's streaming decoder alone makes of `bytes`: the text it
    /// inflates, then its error's kind, if any.
    fn streamed(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(e) = MultiGzDecoder::new(bytes).read_to_end(&mut out) {
            out.extend_from_slice(format!("<{:?}>", e.kind()).as_bytes());
        }
        out
    }

    #[test]
    fn every_cut_of_one_or_two_members_reads_as_the_streaming_decoder_reads_it() {
        let (a, b) = (br#"{"Records":[{"eventID":"a"}]}"#.repeat(20), b"{\"eventID\":\"b\"}\n".repeat(15));
        let one = gz(&a);
        let two = [gz(&a), gz(&b)].concat();
        for whole in [&one, &two] {
            for cut in 0..=whole.len() {
                let bytes = whole[..cut].to_vec();
                for len in [None, Some(cut as u64)] {
                    let mut g = Gzip::new(Box::new(Cursor::new(bytes.clone())), len);
                    let mut out = Vec::new();
                    let n = g.inflate_whole(&mut out, 10_000);
                    if n.is_none() {
                        out.clear();
                    }
                    if let Err(e) = g.read_to_end(&mut out) {
                        out.extend_from_slice(format!("<{:?}>", e.kind()).as_bytes());
                    }
                    assert_eq!(out, streamed(&bytes), "cut at {cut} of {}", whole.len());
                    // Only the first member, whole and alone, is taken in one call.
                    assert_eq!(n.is_some(), cut == one.len(), "cut at {cut}");
                }
            }
        }
    }

    #[test]
    fn a_stream_known_to_be_too_long_is_not_held() {
        let a = b"some text\n".repeat(30);
        let bytes = gz(&a);
        let mut g = Gzip::new(Box::new(Cursor::new(bytes.clone())), Some(100_000));
        let mut out = Vec::new();
        assert_eq!(g.inflate_whole(&mut out, 1000), None);
        assert!(matches!(g.state, State::Unread(_)), "nothing read");
        g.read_to_end(&mut out).unwrap();
        assert_eq!(out, a);
        let mut g = Gzip::new(Box::new(Cursor::new(bytes.clone())), Some(bytes.len() as u64));
        assert_eq!(g.inflate_whole(&mut out, 1000), Some(a.len()));
    }

    #[test]
    fn a_stream_begun_is_read_on_as_a_stream() {
        let a = b"some text\n".repeat(30);
        let mut g = Gzip::new(Box::new(Cursor::new(gz(&a))), None);
        let mut first = [0u8; 10];
        g.read_exact(&mut first).unwrap();
        let mut out = Vec::new();
        assert_eq!(g.inflate_whole(&mut out, 10_000), None);
        g.read_to_end(&mut out).unwrap();
        assert_eq!([&first[..], &out].concat(), a);
    }

    #[test]
    fn a_read_error_comes_after_the_bytes_read_before_it() {
        struct Broken(Cursor<Vec<u8>>);
        impl Read for Broken {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(100);
                match self.0.read(&mut buf[..n])? {
                    0 => Err(io::Error::other("disk gone")),
                    n => Ok(n),
                }
            }
        }
        let a = b"line of text\n".repeat(40);
        let mut g = Gzip::new(Box::new(io::BufReader::new(Broken(Cursor::new(gz(&a))))), None);
        let mut out = Vec::new();
        assert_eq!(g.inflate_whole(&mut out, 10_000), None);
        let mut got = vec![0u8; a.len()];
        g.read_exact(&mut got).unwrap();
        assert_eq!(got, a, "every byte of the member before the error");
        let e = g.read(&mut [0u8; 16]).unwrap_err();
        assert_eq!(e.to_string(), "disk gone");
    }
}
