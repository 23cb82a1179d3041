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
//! | [`wal`] | WAL archive files: names, segments, timeline and backup history files |
//! | [`dump`] | the header of a `pg_dump -Fc` archive: its magic and the versions it records |
//! | [`recovery`] | point-in-time recovery: targets, choosing the base backup, recovery settings |
//! | [`scratch`] | a throwaway server on a restored data directory, for drills |
//! | [`control`] | `global/pg_control`: the cluster's system identifier |
//! | [`conninfo`] | libpq connection strings: parsed, re-targeted, defaults applied |
//! | [`tools`] | where `pg_dump`, `pg_restore` and the other client programs are found |

pub mod archive;
pub mod backup;
pub mod conninfo;
pub mod control;
pub mod dump;
pub mod recovery;
pub mod scratch;
pub mod tools;
pub mod wal;
