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

use super::budget::{Budget, Permit};
use super::split::Splitter;

/// Default read buffer size: four maximum-size chunks, so the carried tail is small.
pub const DEFAULT_BUFFER_BYTES: usize = 16 * 1024 * 1024;

/// A buffer plus the budget it holds; dropped when its last chunk is.
struct Owned {
    data: Vec<u8>,
    _permit: Permit,
}

impl AsRef<[u8]> for Owned {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

/// Yields the chunks of one stream.
pub struct ChunkReader<'a, R: Read> {
    reader: R,
    splitter: &'a mut dyn Splitter,
    budget: &'a Budget,
    buffer_bytes: usize,
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
        budget: &'a Budget,
        buffer_bytes: usize,
        size_hint: Option<u64>,
    ) -> Self {
        ChunkReader {
            reader,
            splitter,
            budget,
            buffer_bytes,
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
            if let Some(n) = self.splitter.next_cut(avail, self.eof) {
                if n > 0 {
                    let chunk = self.buf.slice(self.pos..self.pos + n);
                    self.pos += n;
                    return Ok(Some(chunk));
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
        let want = self.buffer_bytes.max(tail.len() + self.splitter.max_chunk());
        let capacity = match self.size_hint {
            // One byte more than the hint, so the end of file is seen without a second buffer.
            Some(left) => want.min(tail.len() + usize::try_from(left).unwrap_or(usize::MAX).saturating_add(1)),
            None => want,
        }
        .max(tail.len() + 1);
        let permit = self.budget.acquire(capacity);
        // Zeroed once per buffer (a memset, far cheaper than the hashing that follows).
        let mut data = vec![0u8; capacity];
        data[..tail.len()].copy_from_slice(tail);
        let before = tail.len();
        let mut filled = before;
        while filled < capacity {
            match self.reader.read(&mut data[filled..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        data.truncate(filled);
        let fresh = (data.len() - before) as u64;
        self.bytes_read += fresh;
        if let Some(left) = self.size_hint.as_mut() {
            *left = left.saturating_sub(fresh);
        }
        self.buf = Bytes::from_owner(Owned {
            data,
            _permit: permit,
        });
        self.pos = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::split::{Fixed, Whole};
    use super::*;

    #[test]
    fn chunks_concatenate_to_input_and_release_budget() {
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let budget = Budget::new(1 << 20);
        let mut splitter = Fixed::new(3000);
        let mut reader = ChunkReader::new(&data[..], &mut splitter, &budget, 8192, None);
        let mut out = Vec::new();
        while let Some(chunk) = reader.next_chunk().unwrap() {
            assert!(chunk.len() <= 3000);
            out.extend_from_slice(&chunk);
        }
        assert_eq!(out, data);
        assert_eq!(reader.bytes_read(), data.len() as u64);
        drop(reader);
        assert_eq!(budget.available(), 1 << 20);
    }

    #[test]
    fn empty_input_yields_nothing() {
        let budget = Budget::new(1 << 20);
        let mut splitter = Whole::new(1 << 16);
        let mut reader = ChunkReader::new(&b""[..], &mut splitter, &budget, 8192, Some(0));
        assert!(reader.next_chunk().unwrap().is_none());
    }
}
