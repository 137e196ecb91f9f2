//! A [`Wire`] over any byte stream (`AsyncRead + AsyncWrite`): a plain TCP
//! socket today, TLS around it next. What the bytes mean is the
//! [`StreamCodec`]'s business.

use std::io;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::driver::Wire;
use super::now;
use crate::protocol::Outgoing;
use crate::session::Input;

/// Bytes read at a time: a quiet peer's reads start at [`FIRST_READ`], and
/// grow while reads fill them, up to [`MAX_READ`].
const FIRST_READ: usize = 128;
const MAX_READ: usize = 4096;

/// Write buffer capacity kept between batches; a bigger one (after a
/// burst) is freed.
const WRITE_BUF_KEPT: usize = 16 * 1024;

/// Turns bytes into inputs and events into bytes, for one connection.
pub trait StreamCodec: Send {
    /// The next whole input at the front of `buf`, if there is one.
    fn decode(&mut self, buf: &mut BytesMut) -> Option<Input>;
    /// The peer sent its last byte: what is left in `buf`.
    fn decode_eof(&mut self, buf: &mut BytesMut) -> Option<Input>;
    /// Unterminated input after a pause, taken as whole (`None`: wait on).
    fn decode_partial(&mut self, buf: &mut BytesMut) -> Option<Input>;
    /// Appends `event`'s bytes to `out`.
    fn encode(&mut self, event: &Outgoing, out: &mut BytesMut);
}

/// A byte stream and its codec.
pub struct StreamWire<IO, C> {
    io: IO,
    codec: C,
    read_buf: BytesMut,
    /// How much room to have for the next read: grows while reads fill it,
    /// shrinks when they use little of it.
    read_size: usize,
    /// Encoded, not yet written; `write_all_buf` advances past what went
    /// out, so a write cut short (the hub's drop wins the race) never
    /// sends bytes twice.
    write_buf: BytesMut,
    /// Bytes ever encoded into `write_buf`: less what it holds, what went out.
    encoded: u64,
    /// Unterminated input counts as whole after this much silence; `None`:
    /// never.
    partial_flush: Option<Duration>,
    partial_deadline: Option<Instant>,
}

impl<IO, C> StreamWire<IO, C> {
    /// A wire over `io`; see [`crate::session::Limits::partial_line_flush`]
    /// for `partial_flush` (zero turns it off).
    pub fn new(io: IO, codec: C, partial_flush: Duration) -> Self {
        StreamWire {
            io,
            codec,
            read_buf: BytesMut::new(),
            read_size: FIRST_READ,
            write_buf: BytesMut::new(),
            encoded: 0,
            partial_flush: (!partial_flush.is_zero()).then_some(partial_flush),
            partial_deadline: None,
        }
    }

    /// With input already read from `io` before (by an IRC client's
    /// registration): decoded first.
    pub fn with_input(mut self, read: BytesMut) -> Self {
        self.read_buf = read;
        self
    }

    /// Once everything read is handled: a buffer grown by a burst is
    /// given back, so a quiet connection keeps only a small one.
    fn drained(&mut self) {
        self.partial_deadline = None;
        if self.read_buf.capacity() > MAX_READ {
            self.read_buf = BytesMut::new();
        }
    }
}

impl<IO, C> Wire for StreamWire<IO, C>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
    C: StreamCodec,
{
    fn next_input(&mut self) -> Option<Input> {
        let input = self.codec.decode(&mut self.read_buf);
        if input.is_none() && self.read_buf.is_empty() {
            self.drained();
        }
        input
    }

    async fn receive(&mut self) -> io::Result<bool> {
        self.read_buf.reserve(self.read_size);
        let room = self.read_buf.capacity() - self.read_buf.len();
        // `read_buf` is cancel-safe: if dropped, nothing was read.
        let read = self.io.read_buf(&mut self.read_buf).await?;
        if read == room {
            self.read_size = (self.read_size * 2).min(MAX_READ);
        } else if read < room / 4 {
            self.read_size = (self.read_size / 2).max(FIRST_READ);
        }
        self.partial_deadline = self.partial_flush.map(|flush| now() + flush);
        Ok(read > 0)
    }

    fn last_input(&mut self) -> Option<Input> {
        self.codec.decode_eof(&mut self.read_buf)
    }

    fn partial_deadline(&self) -> Option<Instant> {
        self.partial_deadline.filter(|_| !self.read_buf.is_empty())
    }

    fn restart_partial_clock(&mut self) {
        if self.partial_deadline.is_some() {
            self.partial_deadline = self.partial_flush.map(|flush| now() + flush);
        }
    }

    fn take_partial(&mut self) -> Option<Input> {
        self.partial_deadline = None;
        let input = self.codec.decode_partial(&mut self.read_buf);
        if self.read_buf.is_empty() {
            self.drained();
        }
        input
    }

    fn encode(&mut self, event: &Outgoing) {
        let before = self.write_buf.len();
        self.codec.encode(event, &mut self.write_buf);
        self.encoded += (self.write_buf.len() - before) as u64;
    }

    fn written(&self) -> u64 {
        self.encoded - self.write_buf.len() as u64
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.io.write_all_buf(&mut self.write_buf).await?;
        self.io.flush().await?;
        if self.write_buf.capacity() > WRITE_BUF_KEPT {
            self.write_buf = BytesMut::new();
        }
        Ok(())
    }

    async fn close(&mut self) -> io::Result<()> {
        self.io.shutdown().await
    }

    async fn discard_input(&mut self) {
        let mut scratch = [0u8; 1024];
        while let Ok(read) = self.io.read(&mut scratch).await {
            if read == 0 {
                break;
            }
        }
    }
}
