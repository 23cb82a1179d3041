//! `global/pg_control`: the one fact stowage reads from it, the cluster's system
//! identifier, in its first eight bytes, little-endian on every platform stowage runs on
//! (`reference/postgresql.md` §5).

use std::io::Read;
use std::path::Path;

/// The system identifier at the start of a `pg_control` file's bytes, if there are eight.
pub fn system_identifier_of(control: &[u8]) -> Option<u64> {
    let id: [u8; 8] = control.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(id))
}

/// The system identifier in `global/pg_control` of data directory `pgdata`.
///
/// # Errors
/// The file cannot be opened or is shorter than eight bytes.
pub fn system_identifier(pgdata: &Path) -> std::io::Result<u64> {
    let mut file = std::fs::File::open(pgdata.join("global").join("pg_control"))?;
    let mut id = [0u8; 8];
    file.read_exact(&mut id)?;
    Ok(u64::from_le_bytes(id))
}
