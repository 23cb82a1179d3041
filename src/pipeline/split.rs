//! Splitters find cut points; they never copy or own bytes.
//!
//! The reader hands a splitter the unconsumed part of its buffer and slices the chunk
//! itself, so chunks are `Bytes::slice`s of the read buffer. Three kinds cover every
//! source: content-defined (opaque streams: dumps, tars, files), fixed-size (page-aligned
//! files: SQLite pages, PostgreSQL relation blocks) and whole-object (WAL segments).

use fastcdc::v2020::{cut_gear, get_gear_with_seed, MASKS};

use crate::repo::config::ChunkerParams;

/// Finds where the next chunk ends.
///
/// ```
/// use stowage::pipeline::split::{Fixed, Splitter};
///
/// let mut pages = Fixed::new(8192);
/// assert_eq!(pages.next_cut(&[0u8; 20000], false), Some(8192));
/// assert_eq!(pages.next_cut(&[0u8; 100], false), None); // wait for more bytes
/// assert_eq!(pages.next_cut(&[0u8; 100], true), Some(100)); // the tail at the end
/// ```
pub trait Splitter: Send {
    /// Length of the chunk starting at `buf[0]`, or `None` when more bytes are needed to
    /// decide. With `eof`, every non-empty `buf` yields a chunk.
    fn next_cut(&mut self, buf: &[u8], eof: bool) -> Option<usize>;

    /// The longest chunk this splitter returns; the reader's buffers hold at least this.
    fn max_chunk(&self) -> usize;
}

/// FastCDC 2020 with normalization level 1 and a per-repository gear-table seed.
pub struct FastCdc {
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
}

impl FastCdc {
    /// `params` must have passed [`ChunkerParams::validate`].
    pub fn new(params: &ChunkerParams, seed: u64) -> Self {
        let bits = params.avg_bytes.trailing_zeros() as usize;
        let (gear, gear_ls) = get_gear_with_seed(seed);
        FastCdc {
            min: params.min_bytes as usize,
            avg: params.avg_bytes as usize,
            max: params.max_bytes as usize,
            mask_s: MASKS[bits + 1],
            mask_l: MASKS[bits - 1],
            gear,
            gear_ls,
        }
    }
}

impl Splitter for FastCdc {
    fn next_cut(&mut self, buf: &[u8], eof: bool) -> Option<usize> {
        if buf.is_empty() {
            return None;
        }
        let (_, cut) = cut_gear(
            buf,
            self.min,
            self.avg,
            self.max,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear,
            &self.gear_ls,
        );
        // A cut at the very end of a short buffer only means "no cut point yet".
        (cut < buf.len() || eof || buf.len() >= self.max).then_some(cut)
    }

    fn max_chunk(&self) -> usize {
        self.max
    }
}

/// Fixed-size chunks (`size` bytes each, the last may be shorter): page-aligned sources.
pub struct Fixed {
    size: usize,
}

impl Fixed {
    pub fn new(size: usize) -> Self {
        Fixed { size: size.max(1) }
    }
}

impl Splitter for Fixed {
    fn next_cut(&mut self, buf: &[u8], eof: bool) -> Option<usize> {
        if buf.len() >= self.size {
            Some(self.size)
        } else {
            (eof && !buf.is_empty()).then_some(buf.len())
        }
    }

    fn max_chunk(&self) -> usize {
        self.size
    }
}

/// The whole input is one chunk (unique objects such as WAL segments: compress, no dedup).
pub struct Whole {
    limit: usize,
}

impl Whole {
    /// `limit` bounds the object size (and the buffer the reader allocates).
    pub fn new(limit: usize) -> Self {
        Whole { limit }
    }
}

impl Splitter for Whole {
    fn next_cut(&mut self, buf: &[u8], eof: bool) -> Option<usize> {
        if buf.len() >= self.limit {
            Some(self.limit)
        } else {
            (eof && !buf.is_empty()).then_some(buf.len())
        }
    }

    fn max_chunk(&self) -> usize {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cuts(splitter: &mut dyn Splitter, data: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut pos = 0;
        while let Some(n) = splitter.next_cut(&data[pos..], true) {
            out.push(n);
            pos += n;
        }
        assert_eq!(pos, data.len());
        out
    }

    #[test]
    fn fastcdc_respects_bounds_and_is_deterministic() {
        let params = ChunkerParams {
            min_bytes: 1024,
            avg_bytes: 4096,
            max_bytes: 16384,
            ..ChunkerParams::default()
        };
        let data: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let a = cuts(&mut FastCdc::new(&params, 7), &data);
        let b = cuts(&mut FastCdc::new(&params, 7), &data);
        assert_eq!(a, b);
        assert!(a[..a.len() - 1]
            .iter()
            .all(|&n| (1024..=16384).contains(&n)));
        assert_ne!(
            a,
            cuts(&mut FastCdc::new(&params, 8), &data),
            "seed changes cut points"
        );
        // Not at EOF and no cut point in a short buffer: ask for more.
        assert_eq!(FastCdc::new(&params, 7).next_cut(&data[..500], false), None);
    }

    #[test]
    fn fixed_and_whole() {
        assert_eq!(
            cuts(&mut Fixed::new(4096), &[0u8; 10000]),
            vec![4096, 4096, 1808]
        );
        assert_eq!(Fixed::new(4096).next_cut(&[0u8; 100], false), None);
        assert_eq!(cuts(&mut Whole::new(1 << 20), &[1u8; 5000]), vec![5000]);
        assert!(cuts(&mut Whole::new(1 << 20), &[]).is_empty());
    }
}
