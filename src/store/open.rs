//! Turning a `--repo` location into a store.

use std::sync::Arc;

use super::s3::{S3Options, S3Store};
use super::{LocalStore, ObjectStore, StoreError};

/// Settings of every kind of store; each location uses its own part.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    pub s3: S3Options,
}

/// Opens the store a repository location names: `s3://bucket/prefix`, or a directory
/// path (the embedded default).
///
/// Other `scheme://` locations are refused rather than taken for a relative directory.
///
/// # Errors
/// [`StoreError::BadLocation`] for an empty or unsupported location; for S3, whatever
/// [`S3Store::connect`] finds wrong (no bucket, credentials, region).
pub async fn open_store(
    location: &str,
    options: &StoreOptions,
) -> Result<Arc<dyn ObjectStore>, StoreError> {
    if location.is_empty() {
        return Err(StoreError::BadLocation {
            location: location.into(),
            reason: "empty repository location (set --repo or STOWAGE_REPO)".into(),
        });
    }
    if location.starts_with("s3://") {
        return Ok(Arc::new(
            S3Store::connect(location, options.s3.clone()).await?,
        ));
    }
    if let Some((scheme, _)) = location.split_once("://") {
        return Err(StoreError::BadLocation {
            location: location.into(),
            reason: format!("the {scheme}:// scheme is not supported (s3:// or a directory)"),
        });
    }
    Ok(Arc::new(LocalStore::new(location)))
}
