//! Object keys: the one type every store operation is addressed by.

use std::fmt;

/// A `/`-separated relative key such as `data/3f/3f9a…` or `snapshots/0c1d…`.
///
/// Invariants, checked by [`ObjectKey::new`]: not empty, no leading `/`, no empty, `.`
/// or `..` segment, no NUL. So a key can always be joined under a directory (or an S3
/// prefix) without escaping it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

/// A string that is not a valid [`ObjectKey`].
#[derive(Debug, thiserror::Error)]
#[error("invalid object key {0:?}")]
pub struct InvalidKey(pub String);

impl ObjectKey {
    /// Validates `key`.
    ///
    /// ```
    /// use stowage::store::ObjectKey;
    ///
    /// let key = ObjectKey::new("data/3f/3f9a").unwrap();
    /// assert_eq!(key.name(), "3f9a");
    /// assert!(ObjectKey::new("../escape").is_err());
    /// assert!(ObjectKey::new("/absolute").is_err());
    /// ```
    ///
    /// # Errors
    /// [`InvalidKey`] when the key could escape its root or is empty.
    pub fn new(key: impl Into<String>) -> Result<Self, InvalidKey> {
        let key = key.into();
        let ok = !key.is_empty()
            && !key.contains('\0')
            && key
                .split('/')
                .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
        if ok {
            Ok(ObjectKey(key))
        } else {
            Err(InvalidKey(key))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last segment (the file name of the object).
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_escapes() {
        for bad in ["", "/abs", "a//b", "a/../b", "..", "./a", "a/", "a\0b"] {
            assert!(ObjectKey::new(bad).is_err(), "{bad:?} accepted");
        }
        let key = ObjectKey::new("data/ab/abcdef").unwrap();
        assert_eq!(key.name(), "abcdef");
    }
}
