//! stowage: a backup pipeline for the data disaster-recovery runbooks exist to save.
//!
//! ```text
//! source ──► split ──► hash ──► dedup ──► compress ──► encrypt ──► pack ──► upload ──► index ──► snapshot
//! source/    pipeline/ (one thread per source, then a sealing pool, a packer, tokio uploads)   repo/ → store/
//! ```
//!
//! | module | what it is |
//! |---|---|
//! | [`store`] | the `ObjectStore` trait and its backends (local directory) |
//! | [`repo`] | the repository format: ids, keys, blobs, packs, indexes, trees, snapshots |
//! | [`pipeline`] | the bounded, one-way backup pipeline |
//! | [`source`] | where bytes come from: stdin, file trees, pg_dump (and any child process), Vault snapshots |
//! | [`backup`] | one backup run end to end, snapshot last |
//! | [`restore`] | snapshots back to files or streams, refusing path escapes |
//! | [`verify`] | structural and full-data checks that name the culprit |
//! | [`drill`] | restore drills: restore into scratch space, start, check, measure RTO and RPO |
//! | [`vault`] | HashiCorp Vault raft snapshots: the archive format (read, checked, rebuilt) and the snapshot API |
//! | [`sqlite`] | SQLite databases: the header, a consistent page-by-page read of a live database, the integrity check, the open-by-another-process probe |
//! | [`pg`] | PostgreSQL's own files: WAL segment, history and backup files checked and summarized; dump headers, connection strings, client programs |
//!
//! Dependencies point one way: `source, pipeline → repo → store`. `formats/REPOSITORY.md`
//! is the normative description of every stored byte.

pub mod backup;
pub mod drill;
pub mod host;
pub mod human;
pub mod pg;
pub mod pipeline;
pub mod repo;
pub mod restore;
pub mod source;
pub mod sqlite;
pub mod store;
pub mod vault;
pub mod verify;
