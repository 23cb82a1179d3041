//! The first stage: fill budgeted buffers from a reader and slice them into chunks.
//!
//! ```text
//!  buffer k   [ chunk | chunk | chunk | tail… ]      frozen into Bytes (owner holds the Permit)
//!  buffer k+1 [ …tail | chunk | chunk | tail… ]      only the tail (< one max chunk) is copied
//! ```
//! Chunks are `Bytes::slice`s of the buffer: hashing and sealing read them in place. The
//! only copy is the unfinished tail carried into the next buffer, at most one maximum
//! chunk per buffer. Runs on a blocking thread (the source's), never on an async worker.

use std::io::{self, Read};

use bytes::Bytes;

use super::buffers::ReadBuffers;
use super::split::Splitter;

/// Default read buffer size: four maximum-size chunks, so the carried tail is small.
pub const DEFAULT_BUFFER_BYTES: usize = 16 * 1024 * 1024;

/// Yields the chunks of one stream.
pub struct ChunkReader<'a, R: Read> {
    reader: R,
    splitter: &'a mut dyn Splitter,
    buffers: &'a ReadBuffers,
    /// Bytes the source says remain, to size small buffers to small files.
    size_hint: Option<u64>,
    buf: Bytes,
    pos: usize,
    eof: bool,
    bytes_read: u64,
}

impl<'a, R: Read> ChunkReader<'a, R> {
    pub fn new(
        reader: R,
        splitter: &'a mut dyn Splitter,
        buffers: &'a ReadBuffers,
        size_hint: Option<u64>,
    ) -> Self {
        ChunkReader {
            reader,
            splitter,
            buffers,
            size_hint,
            buf: Bytes::new(),
            pos: 0,
            eof: false,
            bytes_read: 0,
        }
    }

    /// Bytes read from the source so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// The next chunk, or `None` at the end of the stream.
    ///
    /// # Errors
    /// The reader's I/O error.
    pub fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            let avail = &self.buf[self.pos..];
            // Ask the splitter only when a cut is certain (a maximum chunk is at hand, or
            // the input ended): a scan that finds nothing would be repeated in full on the
            // next buffer.
            if avail.len() >= self.splitter.max_chunk() || self.eof {
                if let Some(n) = self.splitter.next_cut(avail, self.eof) {
                    if n > 0 {
                        let chunk = self.buf.slice(self.pos..self.pos + n);
                        self.pos += n;
                        return Ok(Some(chunk));
                    }
                }
            }
            if self.eof {
                return Ok(None);
            }
            self.refill()?;
        }
    }

    fn refill(&mut self) -> io::Result<()> {
        let tail = &self.buf[self.pos..];
        let standard = self.buffers.buffer_bytes();
        let needed = tail.len() + self.splitter.max_chunk();
        let capacity = match self.size_hint {
            // Small inputs get a buffer their size (plus one byte, so the end of file is
            // seen without a second buffer); everything else the recycled standard size.
            Some(left) if (tail.len() as u64).saturating_add(left) < standard as u64 => {
                tail.len() + usize::try_from(left).unwrap_or(usize::MAX) + 1
            }
            _ => standard.max(needed),
        };
        let mut buf = self.buffers.take(capacity);
        buf.data[..tail.len()].copy_from_slice(tail);
        let before = tail.len();
        let mut filled = before;
        while filled < capacity {
            match self.reader.read(&mut buf.data[filled..capacity]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let fresh = (filled - before) as u64;
        self.bytes_read += fresh;
        if let Some(left) = self.size_hint.as_mut() {
            *left = left.saturating_sub(fresh);
        }
        self.buf = buf.freeze(filled);
        self.pos = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::budget::Budget;
    use super::super::split::{Fixed, Whole};
    use super::*;

    #[test]
    fn chunks_concatenate_to_input_and_release_budget() {
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let budget = Budget::new(1 << 20);
        let buffers = ReadBuffers::new(budget.clone(), 8192);
        let mut splitter = Fixed::new(3000);
        let mut reader = ChunkReader::new(&data[..], &mut splitter, &buffers, None);
        let mut out = Vec::new();
        while let Some(chunk) = reader.next_chunk().unwrap() {
            assert!(chunk.len() <= 3000);
            out.extend_from_slice(&chunk);
        }
        assert_eq!(out, data);
        assert_eq!(reader.bytes_read(), data.len() as u64);
        drop(reader);
        drop(buffers);
        assert_eq!(budget.available(), 1 << 20);
    }

    #[test]
    fn empty_input_yields_nothing() {
        let buffers = ReadBuffers::new(Budget::new(1 << 20), 8192);
        let mut splitter = Whole::new(1 << 16);
        let mut reader = ChunkReader::new(&b""[..], &mut splitter, &buffers, Some(0));
        assert!(reader.next_chunk().unwrap().is_none());
    }
}
