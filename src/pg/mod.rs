//! PostgreSQL: what stowage must understand of a cluster's own files to archive them
//! and to restore from them.
//!
//! Everything here follows `/work/shared/reference/postgresql.md` (cited as
//! `reference/postgresql.md §N`), which records each byte layout and rule with the
//! PostgreSQL 12–17 source file it was checked in. The code reads PostgreSQL's formats;
//! it never writes into a live cluster.
//!
//! | module | what it is |
//! |---|---|
//! | [`archive`] | `wal-push`, `wal-fetch` and the archive window: the continuous archive |
//! | [`backup`] | base backups: the server's backup API, `backup_label`, waiting for WAL |
//! | [`tools`] | finding PostgreSQL's client programs |
//! | [`wal`] | WAL archive files: names, segments, timeline and backup history files |

pub mod archive;
pub mod backup;
pub mod tools;
pub mod wal;
