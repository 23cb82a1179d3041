//! The `ObjectStore` contract, checked on `S3Store` against a real S3 server: create-only
//! writes under a race, ranges, not-found, listing, multipart, unfinished uploads.
//!
//! One test in its own binary: the AWS credential chain reads the process environment,
//! which is set once here before any client exists.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use stowage::store::s3::{S3Options, S3Store};
use stowage::store::{ObjectKey, ObjectStore, PutMode, StoreError};

use common::s3_server::S3Server;
use common::{pattern, BUCKET};

fn key(s: &str) -> ObjectKey {
    ObjectKey::new(s).unwrap()
}

#[test]
fn s3_store_keeps_the_object_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(&dir.path().join("s3"), &[BUCKET]);
    for (name, value) in server.env() {
        std::env::set_var(name, value);
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let options = S3Options {
            part_size: 5 * 1024 * 1024,
            initial_backoff: std::time::Duration::from_millis(10),
            ..Default::default()
        };
        let store: Arc<dyn ObjectStore> = Arc::new(
            S3Store::connect(&format!("s3://{BUCKET}/contract/"), options)
                .await
                .unwrap(),
        );
        assert_eq!(store.location(), format!("s3://{BUCKET}/contract"));

        // Not found is NotFound, for every read.
        let missing = key("snapshots/missing");
        assert!(matches!(
            store.get(&missing).await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            store.head(&missing).await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            store.get_range(&missing, 0..1).await,
            Err(StoreError::NotFound { .. })
        ));
        store.delete(&missing).await.unwrap();

        // Create-only never replaces, even when writers race past the HEAD check.
        let contested = key("snapshots/contested");
        let racers: Vec<_> = (0..8u8)
            .map(|i| {
                let store = store.clone();
                let contested = contested.clone();
                tokio::spawn(async move {
                    let body = Bytes::from(vec![i; 1000]);
                    store
                        .put(&contested, body, PutMode::Create)
                        .await
                        .map(|()| i)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for racer in racers {
            match racer.await.unwrap() {
                Ok(i) => winners.push(i),
                Err(StoreError::AlreadyExists { .. }) => {}
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one create wins: {winners:?}");
        let stored = store.get(&contested).await.unwrap();
        assert_eq!(stored, Bytes::from(vec![winners[0]; 1000]));
        store
            .put(&contested, Bytes::from_static(b"new"), PutMode::Overwrite)
            .await
            .unwrap();
        assert_eq!(
            store.get(&contested).await.unwrap(),
            Bytes::from_static(b"new")
        );

        // A multipart object (17 MiB in 5 MiB parts) reads back whole and by range.
        let big = Bytes::from(pattern(17 * 1024 * 1024 + 3, 1));
        let pack = key("data/ab/abcdef");
        store
            .put(&pack, big.clone(), PutMode::Create)
            .await
            .unwrap();
        assert_eq!(store.head(&pack).await.unwrap().size, big.len() as u64);
        assert_eq!(store.get(&pack).await.unwrap(), big);
        let range = 5 * 1024 * 1024 - 10..5 * 1024 * 1024 + 10;
        assert_eq!(
            store
                .get_range(&pack, range.start as u64..range.end as u64)
                .await
                .unwrap(),
            big.slice(range)
        );
        let end = big.len() as u64;
        assert!(store.get_range(&pack, end..end).await.unwrap().is_empty());
        for bad in [end - 1..end + 1, end + 5..end + 9] {
            match store.get_range(&pack, bad.clone()).await {
                Err(StoreError::RangeOutOfBounds { size, .. }) => assert_eq!(size, end),
                other => panic!("{bad:?}: {other:?}"),
            }
        }

        // Listing is by prefix, relative to the repository, sorted.
        store
            .put(
                &key("data/cd/cdef"),
                Bytes::from_static(b"x"),
                PutMode::Create,
            )
            .await
            .unwrap();
        let listed: Vec<String> = store
            .list("data/")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.key.to_string())
            .collect();
        assert_eq!(listed, ["data/ab/abcdef", "data/cd/cdef"]);
        store.delete(&key("data/cd/cdef")).await.unwrap();
        assert_eq!(store.list("data/").await.unwrap().len(), 1);

        // Nothing unfinished after all of the above; aborting an unknown upload is fine.
        assert!(store.list_incomplete().await.unwrap().is_empty());
        assert_eq!(server.open_uploads(), 0);
    });
}
