//! The property the `sqlite_header` fuzz target checks.
//!
//! Like `mod.rs` beside it, this file is compiled twice, by the fuzz target
//! (`fuzz/fuzz_targets/sqlite_header.rs`, through `#[path]`) and by the corpus replay
//! (`tests/fuzz_corpus.rs`), so `cargo test` replays exactly what the fuzzer ran. It uses
//! only `std` and `stowage`.

#![allow(dead_code)]

use stowage::sqlite::header::{Header, HeaderError, HEADER_LEN};

/// A target's property: panics when `data` breaks it.
pub type Check = fn(data: &[u8]);

/// The SQLite targets, by the name of their corpus directory.
pub const TARGETS: &[(&str, Check)] = &[("sqlite_header", sqlite_header)];

/// `sqlite_header` input: the first bytes of a file offered to `backup sqlite` (or page 1
/// of a snapshot being read).
///
/// 1. `Header::parse` never panics.
/// 2. Only the first 100 bytes matter: whatever follows them, the verdict is the same.
/// 3. An accepted header has a page size SQLite could use (a power of two from 512 to
///    65536 with at least 480 usable bytes) and a valid file format (1 or 2).
/// 4. Fewer than 100 bytes are never accepted.
pub fn sqlite_header(data: &[u8]) {
    let verdict = Header::parse(data);
    if data.len() < HEADER_LEN {
        assert!(
            matches!(
                verdict,
                Err(HeaderError::Short { .. } | HeaderError::NotSqlite)
            ),
            "a short input got {verdict:?}"
        );
        return;
    }
    assert_eq!(
        Header::parse(&data[..HEADER_LEN]),
        verdict,
        "bytes past 100 mattered"
    );
    if let Ok(header) = verdict {
        assert!(header.page_size.is_power_of_two());
        assert!((512..=65536).contains(&header.page_size));
        assert!(header.page_size - u32::from(header.reserved) >= 480);
        assert!(matches!(header.write_version, 1 | 2));
        assert_eq!(header.is_wal(), header.write_version == 2);
    }
}
