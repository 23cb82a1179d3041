//! Read buffers: budgeted, and recycled so the steady state allocates nothing.
//!
//! Why recycle: a fresh 16 MiB allocation is fresh pages from the kernel, zeroed and
//! faulted in one by one, which cost as much system time as the reading itself. A buffer
//! comes back to the pool when the last chunk sliced from it is dropped; the pool never
//! holds more buffers than the budget allows to be in flight.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::budget::{Budget, Permit};

type FreeList = Arc<Mutex<Vec<Vec<u8>>>>;

/// Hands out read buffers within a byte budget.
#[derive(Debug, Clone)]
pub struct ReadBuffers {
    budget: Budget,
    free: FreeList,
    buffer_bytes: usize,
}

/// A buffer being filled. Its first `filled` bytes are data; the rest is scratch.
pub struct FillBuffer {
    pub data: Vec<u8>,
    permit: Permit,
    pool: Option<FreeList>,
}

/// A filled buffer frozen for slicing; returns to the pool when its last slice drops.
struct Owned {
    data: Vec<u8>,
    len: usize,
    _permit: Permit,
    pool: Option<FreeList>,
}

impl AsRef<[u8]> for Owned {
    fn as_ref(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            let mut free = pool.lock().unwrap_or_else(|p| p.into_inner());
            free.push(std::mem::take(&mut self.data));
        }
    }
}

impl ReadBuffers {
    pub fn new(budget: Budget, buffer_bytes: usize) -> Self {
        ReadBuffers {
            budget,
            free: Arc::new(Mutex::new(Vec::new())),
            buffer_bytes: buffer_bytes.max(4096),
        }
    }

    /// The standard buffer size.
    pub fn buffer_bytes(&self) -> usize {
        self.buffer_bytes
    }

    /// A buffer of exactly `capacity` usable bytes, blocking until the budget allows it.
    /// Standard-size buffers are recycled; odd sizes (small files, oversized tails) are not.
    pub fn take(&self, capacity: usize) -> FillBuffer {
        let permit = self.budget.acquire(capacity);
        if capacity == self.buffer_bytes {
            let recycled = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let data = recycled.unwrap_or_else(|| vec![0u8; capacity]);
            return FillBuffer {
                data,
                permit,
                pool: Some(self.free.clone()),
            };
        }
        FillBuffer {
            data: vec![0u8; capacity],
            permit,
            pool: None,
        }
    }
}

impl FillBuffer {
    /// Freezes the first `filled` bytes.
    pub fn freeze(self, filled: usize) -> Bytes {
        Bytes::from_owner(Owned {
            len: filled.min(self.data.len()),
            data: self.data,
            _permit: self.permit,
            pool: self.pool,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_buffers_are_recycled_and_budget_returned() {
        let pool = ReadBuffers::new(Budget::new(1 << 20), 8192);
        let mut buf = pool.take(8192);
        buf.data[0] = 7;
        let ptr = buf.data.as_ptr();
        let frozen = buf.freeze(100);
        let slice = frozen.slice(0..10);
        drop(frozen);
        assert_eq!(slice[0], 7);
        drop(slice);
        let again = pool.take(8192);
        assert_eq!(again.data.as_ptr(), ptr, "the buffer came back");
        assert_eq!(pool.take(100).data.len(), 100);
    }
}
