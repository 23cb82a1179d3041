//! Fixed-size 32-byte identifiers, one newtype per kind of object.
//!
//! Every id has one canonical text form (64 lower-case hex digits) and one parser, so an
//! id never travels as a bare `String` that could land in the wrong slot.

use std::fmt;
use std::str::FromStr;

/// Length of every id in bytes.
pub const ID_LEN: usize = 32;

/// Text that is not a 64-digit hex id.
#[derive(Debug, thiserror::Error)]
#[error("{text:?} is not a valid {kind} id (64 hex digits expected)")]
pub struct ParseIdError {
    pub kind: &'static str,
    pub text: String,
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; ID_LEN]);

        impl $name {
            pub const KIND: &'static str = $kind;

            /// The first 8 hex digits, as listings show it.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }

            pub fn as_bytes(&self) -> &[u8; ID_LEN] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                let mut raw = [0u8; ID_LEN];
                match hex::decode_to_slice(text, &mut raw) {
                    Ok(()) if text.bytes().all(|b| !b.is_ascii_uppercase()) => Ok($name(raw)),
                    _ => Err(ParseIdError { kind: $kind, text: text.to_string() }),
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// A blob: keyed blake3 of its plaintext (see `formats/REPOSITORY.md`, "Blob ids").
    BlobId, "blob"
);
id_type!(
    /// A pack file: blake3 of the pack's stored bytes.
    PackId, "pack"
);
id_type!(
    /// An index file: blake3 of its stored bytes.
    IndexId, "index"
);
id_type!(
    /// A snapshot: blake3 of its stored bytes.
    SnapshotId, "snapshot"
);
id_type!(
    /// A key file: blake3 of its stored bytes.
    KeyId, "key"
);
id_type!(
    /// A repository, chosen at random by `init`.
    RepoId, "repository"
);

/// Unkeyed blake3 of stored bytes: the name of every object that is not a blob.
pub fn content_hash(bytes: &[u8]) -> [u8; ID_LEN] {
    *blake3::hash(bytes).as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects() {
        let id = BlobId([0xab; ID_LEN]);
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<BlobId>().unwrap(), id);
        assert!("ab".parse::<BlobId>().is_err());
        assert!(text.to_uppercase().parse::<BlobId>().is_err());
        assert_eq!(id.short(), "abababab");
    }
}
