//! A byte budget shared by the pipeline's read buffers.
//!
//! Why: a slow store must slow the reader, not grow memory. The reader takes a [`Permit`]
//! for every buffer it fills; the permit travels inside the buffer's `Bytes` owner and is
//! returned when the last chunk sliced from that buffer is dropped (after sealing, or at
//! once for a duplicate). So the bytes held by all chunks in flight never exceed the
//! budget, whatever the input size.

use std::sync::{Arc, Condvar, Mutex};

#[derive(Debug)]
struct State {
    available: usize,
}

/// A counting semaphore over bytes, for blocking threads (never used on async workers).
#[derive(Debug, Clone)]
pub struct Budget {
    inner: Arc<(Mutex<State>, Condvar)>,
    total: usize,
}

/// Bytes taken from a [`Budget`], given back on drop.
#[derive(Debug)]
pub struct Permit {
    budget: Budget,
    bytes: usize,
}

impl Budget {
    pub fn new(total: usize) -> Self {
        Budget {
            inner: Arc::new((Mutex::new(State { available: total }), Condvar::new())),
            total,
        }
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// Blocks until `bytes` are free. A request larger than the whole budget takes the
    /// whole budget, so it cannot wait forever.
    pub fn acquire(&self, bytes: usize) -> Permit {
        let bytes = bytes.min(self.total);
        let (lock, cvar) = &*self.inner;
        let mut state = lock.lock().unwrap_or_else(|p| p.into_inner());
        while state.available < bytes {
            state = cvar.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.available -= bytes;
        Permit {
            budget: self.clone(),
            bytes,
        }
    }

    /// Bytes currently free (for tests and progress).
    pub fn available(&self) -> usize {
        let (lock, _) = &*self.inner;
        lock.lock().unwrap_or_else(|p| p.into_inner()).available
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let (lock, cvar) = &*self.budget.inner;
        let mut state = lock.lock().unwrap_or_else(|p| p.into_inner());
        state.available += self.bytes;
        cvar.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_until_released() {
        let budget = Budget::new(100);
        let a = budget.acquire(60);
        let b2 = budget.clone();
        let waiter = std::thread::spawn(move || {
            let _p = b2.acquire(60);
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!waiter.is_finished());
        drop(a);
        waiter.join().unwrap();
        assert_eq!(budget.available(), 100);
        let _all = budget.acquire(1000);
        assert_eq!(budget.available(), 0);
    }
}
