//! Line framing for untrusted byte streams: bounded, never fatal.

use std::io;

use bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

/// One unit of input from a line-based peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete line, terminator (LF or CRLF) removed.
    Line(String),
    /// A line longer than the limit; its bytes were thrown away.
    TooLong,
    /// A line that is not valid UTF-8; thrown away.
    InvalidUtf8,
}

/// Splits a byte stream into lines of at most `max_len` bytes.
///
/// Unlike `tokio_util`'s `LinesCodec`, an over-long line or bad UTF-8 is a
/// frame, not an error, so the stream goes on: the sender gets told and the
/// next line is read normally. Memory stays bounded by `max_len`: the rest
/// of an over-long line is discarded as it arrives.
#[derive(Debug, Clone)]
pub struct LineCodec {
    max_len: usize,
    /// Where to resume looking for `\n`, so no byte is scanned twice.
    next_index: usize,
    /// Inside an over-long line: drop bytes until the next `\n`.
    discarding: bool,
}

impl LineCodec {
    /// A codec for lines of at most `max_len` bytes (`usize::MAX`: no limit).
    pub fn new(max_len: usize) -> Self {
        LineCodec {
            max_len,
            next_index: 0,
            discarding: false,
        }
    }

    /// Changes the limit for the lines still to come.
    pub fn set_max_len(&mut self, max_len: usize) {
        self.max_len = max_len;
    }

    /// Takes the unterminated text at the end of `buf` as a line of its own
    /// (for peers that never send a newline). A UTF-8 sequence cut off at
    /// the end is left in `buf` to be completed by the next read.
    pub fn take_partial(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        if self.discarding || buf.is_empty() {
            return None;
        }
        let take = match std::str::from_utf8(buf) {
            Ok(_) => buf.len(),
            // An incomplete sequence at the end: keep it for later.
            Err(error) if error.error_len().is_none() => error.valid_up_to(),
            Err(_) => buf.len(),
        };
        if take == 0 {
            return None;
        }
        self.next_index = 0;
        let bytes = buf.split_to(take);
        Some(self.frame(strip_cr(&bytes)))
    }

    /// A line's frame: the buffer may hold a byte over the limit (room
    /// for a CR), so every way out checks the length.
    fn frame(&self, content: &[u8]) -> Frame {
        if content.len() > self.max_len {
            return Frame::TooLong;
        }
        match std::str::from_utf8(content) {
            Ok(text) => Frame::Line(text.to_string()),
            Err(_) => Frame::InvalidUtf8,
        }
    }
}

impl Decoder for LineCodec {
    type Item = Frame;
    type Error = io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Frame>> {
        loop {
            let newline = buf[self.next_index..]
                .iter()
                .position(|byte| *byte == b'\n')
                .map(|offset| self.next_index + offset);
            match (self.discarding, newline) {
                (true, Some(end)) => {
                    buf.advance(end + 1);
                    self.discarding = false;
                    self.next_index = 0;
                }
                (true, None) => {
                    buf.clear();
                    self.next_index = 0;
                    return Ok(None);
                }
                (false, Some(end)) => {
                    let line = buf.split_to(end + 1);
                    self.next_index = 0;
                    return Ok(Some(self.frame(strip_cr(&line[..end]))));
                }
                // One byte of slack for a CR whose LF has not arrived yet.
                (false, None) if buf.len() > self.max_len.saturating_add(1) => {
                    buf.clear();
                    self.next_index = 0;
                    self.discarding = true;
                    return Ok(Some(Frame::TooLong));
                }
                (false, None) => {
                    self.next_index = buf.len();
                    return Ok(None);
                }
            }
        }
    }

    /// At end of input, unterminated text still counts as a line.
    fn decode_eof(&mut self, buf: &mut BytesMut) -> io::Result<Option<Frame>> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        if self.discarding {
            buf.clear();
            self.discarding = false;
            return Ok(None);
        }
        let frame = (!buf.is_empty()).then(|| self.frame(strip_cr(buf)));
        buf.clear();
        self.next_index = 0;
        Ok(frame)
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut LineCodec, buf: &mut BytesMut) -> Vec<Frame> {
        std::iter::from_fn(|| codec.decode(buf).unwrap()).collect()
    }

    fn line(text: &str) -> Frame {
        Frame::Line(text.to_string())
    }

    #[test]
    fn unterminated_text_a_byte_over_the_limit_is_too_long() {
        // The buffer keeps a byte of slack for a CR; it is not a longer line.
        let mut codec = LineCodec::new(4);
        let mut buf = BytesMut::from("abcde");
        assert_eq!(decode_all(&mut codec, &mut buf), vec![]);
        assert_eq!(codec.take_partial(&mut buf.clone()), Some(Frame::TooLong));
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), Some(Frame::TooLong));
        let mut buf = BytesMut::from("abcd\r");
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), Some(line("abcd")));
    }

    #[test]
    fn lf_and_crlf_lines() {
        let mut codec = LineCodec::new(100);
        let mut buf = BytesMut::from("one\ntwo\r\n\nthree");
        assert_eq!(
            decode_all(&mut codec, &mut buf),
            vec![line("one"), line("two"), line("")]
        );
        assert_eq!(&buf[..], b"three");
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), Some(line("three")));
    }

    #[test]
    fn byte_at_a_time_with_utf8_split() {
        let mut codec = LineCodec::new(100);
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for byte in "你好\r\n".as_bytes() {
            buf.extend_from_slice(&[*byte]);
            frames.extend(decode_all(&mut codec, &mut buf));
        }
        assert_eq!(frames, vec![line("你好")]);
    }

    #[test]
    fn long_line_is_reported_once_and_the_next_line_survives() {
        let mut codec = LineCodec::new(8);
        let mut buf = BytesMut::from("0123456789");
        assert_eq!(decode_all(&mut codec, &mut buf), vec![Frame::TooLong]);
        assert!(buf.is_empty(), "the long line is not buffered");
        buf.extend_from_slice(b"abcdef\nok\n");
        assert_eq!(decode_all(&mut codec, &mut buf), vec![line("ok")]);
        let mut buf = BytesMut::from("0123456789\nok\n");
        assert_eq!(
            decode_all(&mut codec, &mut buf),
            vec![Frame::TooLong, line("ok")]
        );
        let mut buf = BytesMut::from("01234567\r\n");
        assert_eq!(decode_all(&mut codec, &mut buf), vec![line("01234567")]);
    }

    #[test]
    fn invalid_utf8_is_a_frame() {
        let mut codec = LineCodec::new(100);
        let mut buf = BytesMut::from(&b"bad \xff\xfe\nfine\n"[..]);
        assert_eq!(
            decode_all(&mut codec, &mut buf),
            vec![Frame::InvalidUtf8, line("fine")]
        );
    }

    #[test]
    fn partial_keeps_a_cut_utf8_sequence() {
        let mut codec = LineCodec::new(100);
        let bytes = "hi 你".as_bytes();
        let mut buf = BytesMut::from(&bytes[..bytes.len() - 1]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert_eq!(codec.take_partial(&mut buf), Some(line("hi ")));
        assert_eq!(buf.len(), 2, "the first two bytes of 你 wait for the third");
        buf.extend_from_slice(&bytes[bytes.len() - 1..]);
        assert_eq!(codec.take_partial(&mut buf), Some(line("你")));
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;
        use crate::protocol::arbitrary::hostile_bytes;

        /// Every frame from `bytes` fed in pieces cut at `cuts`, and the
        /// most the buffer ever held between decodes.
        fn decode_in_pieces(max_len: usize, bytes: &[u8], cuts: &[usize]) -> (Vec<Frame>, usize) {
            let mut codec = LineCodec::new(max_len);
            let mut buf = BytesMut::new();
            let mut frames = Vec::new();
            let mut held = 0;
            let mut start = 0;
            let mut ends: Vec<usize> = cuts.iter().map(|cut| cut % (bytes.len() + 1)).collect();
            ends.sort_unstable();
            ends.push(bytes.len());
            for end in ends {
                buf.extend_from_slice(&bytes[start..end]);
                start = end;
                frames.extend(decode_all(&mut codec, &mut buf));
                held = held.max(buf.len());
            }
            frames.extend(codec.decode_eof(&mut buf).unwrap());
            assert!(buf.is_empty(), "end of input leaves nothing behind");
            (frames, held)
        }

        proptest! {
            /// However the bytes are cut into reads, the same frames come
            /// out, and what waits for a newline never exceeds the limit
            /// (plus a CR's byte of slack).
            #[test]
            fn reads_cut_anywhere_give_the_same_frames_in_bounded_memory(
                max_len in 1usize..64,
                bytes in hostile_bytes(400),
                cuts in proptest::collection::vec(any::<usize>(), 0..12),
            ) {
                let (whole, _) = decode_in_pieces(max_len, &bytes, &[]);
                let (pieces, held) = decode_in_pieces(max_len, &bytes, &cuts);
                prop_assert_eq!(&pieces, &whole);
                prop_assert!(held <= max_len + 1, "held {} bytes", held);
                for frame in &whole {
                    if let Frame::Line(line) = frame {
                        prop_assert!(line.len() <= max_len);
                        prop_assert!(!line.contains('\n'));
                    }
                }
            }

            /// Lines written with LF or CRLF come back as they were, or as
            /// `TooLong` when over the limit: decoding undoes encoding.
            #[test]
            fn lines_come_back_as_written(
                max_len in 0usize..48,
                lines in proptest::collection::vec(("[^\n]{0,40}", any::<bool>()), 0..10),
            ) {
                let lines: Vec<(String, bool)> = lines
                    .into_iter()
                    .filter(|(line, _)| !line.ends_with('\r'))
                    .collect();
                let mut bytes = Vec::new();
                for (line, crlf) in &lines {
                    bytes.extend_from_slice(line.as_bytes());
                    bytes.extend_from_slice(if *crlf { b"\r\n" } else { b"\n" });
                }
                let (frames, _) = decode_in_pieces(max_len, &bytes, &[bytes.len() / 2]);
                let expected: Vec<Frame> = lines
                    .iter()
                    .map(|(text, _)| {
                        if text.len() > max_len {
                            Frame::TooLong
                        } else {
                            Frame::Line(text.clone())
                        }
                    })
                    .collect();
                prop_assert_eq!(frames, expected);
            }
        }
    }
}
