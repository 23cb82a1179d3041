//! Grouping the blobs a restore needs into runs that one ranged read can fetch.
//!
//! A backup writes the chunks of a stream or file tree into packs in order, so the blobs a
//! restore asks for mostly sit one after another in the same pack. Fetching each with its
//! own request costs a round trip per blob (1 MiB, or a few KiB once compressed), which is
//! what dominates a restore from S3; one request per run costs one per several MiB.

use crate::repo::id::BlobId;
use crate::repo::master_index::MasterIndex;

/// Largest stretch of a pack one request reads (sealed bytes, gaps included).
pub const MAX_RUN_SEALED: u64 = 8 * 1024 * 1024;
/// Largest total of opened blobs one run holds in memory.
pub const MAX_RUN_RAW: u64 = 16 * 1024 * 1024;
/// Largest gap between two blobs of a run: reading it is cheaper than another request.
pub const MAX_GAP: u64 = 256 * 1024;
/// Most items in one run, so long stretches of metadata-only items stay interleaved.
const MAX_RUN_ITEMS: usize = 1024;

/// Splits `items` into consecutive groups, in order, such that the blobs of each group
/// (from `blob_of`; items without a blob ride along) lie in one pack in ascending order,
/// at most [`MAX_GAP`] apart, within [`MAX_RUN_SEALED`] and [`MAX_RUN_RAW`]. A blob the
/// index does not know starts a group of its own, so reading it reports it.
pub fn runs<T>(
    index: &MasterIndex,
    items: impl IntoIterator<Item = T>,
    blob_of: impl Fn(&T) -> Option<BlobId>,
) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    let mut current: Vec<T> = Vec::new();
    // (pack, run start, end of last blob, raw total) of the open run, if it has a blob.
    let mut open = None;
    for item in items {
        let Some(id) = blob_of(&item) else {
            current.push(item);
            continue;
        };
        let Some(loc) = index.get(&id) else {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            out.push(vec![item]);
            open = None;
            continue;
        };
        let (offset, end) = (
            u64::from(loc.offset),
            u64::from(loc.offset) + u64::from(loc.sealed_len),
        );
        let raw = u64::from(loc.raw_len);
        let extends = match open {
            Some((pack, start, last_end, raw_total)) => {
                pack == loc.pack
                    // The next blob, or another member of the group just read.
                    && (offset >= last_end || (offset >= start && end == last_end))
                    && offset.saturating_sub(last_end) <= MAX_GAP
                    && end - start <= MAX_RUN_SEALED
                    && raw_total + raw <= MAX_RUN_RAW
                    && current.len() < MAX_RUN_ITEMS
            }
            None => current.len() < MAX_RUN_ITEMS,
        };
        if !extends && !current.is_empty() {
            out.push(std::mem::take(&mut current));
            open = None;
        }
        open = Some(match open {
            Some((pack, start, _, raw_total)) => (pack, start, end, raw_total + raw),
            None => (loc.pack, offset, end, raw),
        });
        current.push(item);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::blob::BlobKind;
    use crate::repo::id::{IndexId, PackId};
    use crate::repo::index::IndexPack;
    use crate::repo::pack::PackEntry;

    fn id(n: u8) -> BlobId {
        BlobId([n; 32])
    }

    /// (blob, offset, sealed length) of the blobs of one pack.
    type Blobs<'a> = &'a [(u8, u32, u32)];

    fn index(packs: &[(u8, Blobs<'_>)]) -> MasterIndex {
        let mut master = MasterIndex::default();
        let packs = packs
            .iter()
            .map(|(pack, blobs)| IndexPack {
                id: PackId([*pack; 32]),
                len: 1 << 30,
                entries: blobs
                    .iter()
                    .map(|(blob, offset, len)| PackEntry {
                        id: id(*blob),
                        kind: BlobKind::Data,
                        offset: *offset,
                        sealed_len: *len,
                        raw_len: *len,
                    })
                    .collect(),
            })
            .collect();
        master.add(IndexId([0; 32]), packs);
        master
    }

    #[test]
    fn adjacent_blobs_of_one_pack_share_a_run() {
        let mib = 1024 * 1024;
        let idx = index(&[
            (1, &[(1, 8, mib), (2, 8 + mib, mib), (3, 8 + 3 * mib, mib)]),
            (2, &[(4, 8, mib)]),
        ]);
        // None items are metadata riding along with the run they sit in.
        let items = vec![Some(1), None, Some(2), Some(3), Some(4), Some(9), Some(1)];
        let grouped = runs(&idx, items, |item| item.map(id));
        assert_eq!(
            grouped,
            vec![
                vec![Some(1), None, Some(2)],
                vec![Some(3)], // a 1 MiB gap is too far
                vec![Some(4)], // another pack
                vec![Some(9)], // unknown: alone
                vec![Some(1)], // going backwards
            ]
        );
    }

    #[test]
    fn runs_stop_at_the_size_limit() {
        let mib = 1024 * 1024;
        let blobs: Vec<(u8, u32, u32)> =
            (0..20).map(|i| (i, 8 + u32::from(i) * mib, mib)).collect();
        let idx = index(&[(1, &blobs)]);
        let grouped = runs(&idx, 0..20u8, |n| Some(id(*n)));
        assert!(grouped.iter().all(|run| run.len() <= 8));
        assert_eq!(grouped.concat(), (0..20).collect::<Vec<_>>());
    }
}
