//! Turning a `--repo` location into a store.

use std::sync::Arc;

use super::{LocalStore, ObjectStore, StoreError};

/// Opens the store a repository location names: a directory path (the embedded default).
///
/// `s3://` locations are recognised and refused with a clear message until the S3 store
/// lands, rather than being taken for a relative directory named `s3:`.
///
/// # Errors
/// [`StoreError::BadLocation`] for an empty or unsupported location.
pub fn open_store(location: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
    if location.is_empty() {
        return Err(StoreError::BadLocation {
            location: location.into(),
            reason: "empty repository location (set --repo or STOWAGE_REPO)".into(),
        });
    }
    if let Some((scheme, _)) = location.split_once("://") {
        return Err(StoreError::BadLocation {
            location: location.into(),
            reason: format!("the {scheme}:// scheme is not supported by this build"),
        });
    }
    Ok(Arc::new(LocalStore::new(location)))
}
