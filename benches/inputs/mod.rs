//! Deterministic bench inputs, the same bytes on every run and machine, shared by every
//! `benches/*.rs` through `#[path]` (each bench is its own crate).
#![allow(dead_code)]

/// The settings every bench uses: few samples, short runs (the machines have 2 cores).
pub fn criterion() -> criterion::Criterion {
    criterion::Criterion::default()
        .sample_size(10)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(5))
}
/// Makes `len` bytes of one kind of input.
pub type Generator = fn(usize) -> Vec<u8>;

/// The three kinds of data stowage mostly sees.
pub const KINDS: [(&str, Generator); 3] = [
    ("incompressible", incompressible),
    ("text", text),
    ("pg_heap", pg_heap),
];

/// xorshift64*: fast, deterministic, and far beyond what zstd can find patterns in.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random bytes (encrypted or already-compressed files): zstd cannot shrink them.
pub fn incompressible(len: usize) -> Vec<u8> {
    let mut rng = Rng::new(0x5EED_0001);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A CSV export of an orders table (a `COPY … TO` or `pg_dump` data section): rows
/// with increasing ids and timestamps, repeated names and varying numbers. zstd -3
/// shrinks it about 7.5×.
pub fn text(len: usize) -> Vec<u8> {
    use std::io::Write;
    const PRODUCT: [&str; 8] = [
        "Widget", "Gadget", "Sprocket", "Bracket", "Flange", "Gasket", "Bearing", "Coupling",
    ];
    const COLOR: [&str; 5] = ["black", "white", "steel", "red", "blue"];
    const SIZE: [&str; 3] = ["small", "medium", "large"];
    const STATUS: [&str; 4] = ["shipped", "pending", "delivered", "returned"];
    const REGION: [&str; 6] = [
        "eu-west",
        "eu-central",
        "us-east",
        "us-west",
        "ap-south",
        "sa-east",
    ];
    let mut rng = Rng::new(0x5EED_0002);
    let mut out = Vec::with_capacity(len + 256);
    out.extend_from_slice(
        b"order_id,created_at,customer_id,customer_email,sku,product,quantity,unit_price,status,region\n",
    );
    let mut id = 1_000_000u64;
    let mut t = 1_704_067_200u64; // 2024-01-01T00:00:00Z
    while out.len() < len {
        id += 1;
        t += rng.below(8);
        let (day, secs) = (t / 86_400 - 19_723, t % 86_400);
        let customer = 100_000 + rng.below(500);
        let sku = rng.below(100);
        let _ = writeln!(
            out,
            "{id},2024-{:02}-{:02}T{:02}:{:02}:{:02}Z,{customer},customer{customer}@example.com,\
             SKU-{sku:05},{} {} {},{},{}.{:02},{},{}",
            day / 28 % 12 + 1,
            day % 28 + 1,
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            PRODUCT[sku as usize % 8],
            COLOR[sku as usize / 8 % 5],
            SIZE[sku as usize / 40],
            1 + rng.below(8) / 5,
            1 + sku * 7 % 200,
            sku * 37 % 100,
            STATUS[(rng.below(16) / 5) as usize],
            REGION[(customer % 6) as usize],
        );
    }
    out.truncate(len);
    out
}

/// PostgreSQL heap pages as `pgbench -i` leaves `pgbench_accounts`: 8 KiB pages with a
/// page header, line pointers, 121-byte tuples (header, three int4, a blank char(84))
/// packed at the page end and zeros between. Half the pages are full (61 tuples), the
/// rest partly filled, one in eight all zeros. zstd -3 shrinks it about 30×.
pub fn pg_heap(len: usize) -> Vec<u8> {
    const PAGE: usize = 8192;
    const TUPLE_LEN: usize = 121;
    const TUPLE_SPACE: usize = 128; // TUPLE_LEN rounded up to MAXALIGN (8)
    const PER_PAGE: u64 = 61;
    let mut rng = Rng::new(0x5EED_0003);
    let mut out = vec![0u8; len];
    let mut aid = 0u32;
    let mut lsn = 0x0000_0001_0000_0000u64;
    for (blk, page) in out.chunks_mut(PAGE).enumerate() {
        if page.len() < PAGE || rng.below(8) == 0 {
            continue; // never used since the relation was extended: all zeros
        }
        let n = if rng.below(2) == 0 {
            PER_PAGE
        } else {
            1 + rng.below(PER_PAGE)
        } as usize;
        lsn += 1 + rng.below(1 << 16);
        // PageHeaderData: pd_lsn, pd_checksum, pd_flags, pd_lower, pd_upper,
        // pd_special, pd_pagesize_version, pd_prune_xid.
        page[0..4].copy_from_slice(&((lsn >> 32) as u32).to_le_bytes());
        page[4..8].copy_from_slice(&(lsn as u32).to_le_bytes());
        page[8..10].copy_from_slice(&(rng.next() as u16).to_le_bytes());
        page[12..14].copy_from_slice(&((24 + 4 * n) as u16).to_le_bytes());
        page[14..16].copy_from_slice(&((PAGE - TUPLE_SPACE * n) as u16).to_le_bytes());
        page[16..18].copy_from_slice(&(PAGE as u16).to_le_bytes());
        page[18..20].copy_from_slice(&(PAGE as u16 | 4).to_le_bytes());
        for i in 0..n {
            aid += 1;
            let off = PAGE - TUPLE_SPACE * (i + 1);
            // ItemIdData: lp_off (15 bits), lp_flags = LP_NORMAL, lp_len (15 bits).
            let lp = off as u32 | (1 << 15) | ((TUPLE_LEN as u32) << 17);
            page[24 + 4 * i..28 + 4 * i].copy_from_slice(&lp.to_le_bytes());
            let t = &mut page[off..off + TUPLE_LEN];
            t[0..4].copy_from_slice(&(1000 + aid / 64).to_le_bytes()); // t_xmin
            t[12..14].copy_from_slice(&((blk >> 16) as u16).to_le_bytes()); // t_ctid
            t[14..16].copy_from_slice(&(blk as u16).to_le_bytes());
            t[16..18].copy_from_slice(&(i as u16 + 1).to_le_bytes());
            t[18..20].copy_from_slice(&4u16.to_le_bytes()); // t_infomask2: 4 attributes
            t[20..22].copy_from_slice(&0x0902u16.to_le_bytes()); // xmin committed, no xmax
            t[22] = 24; // t_hoff
            t[24..28].copy_from_slice(&aid.to_le_bytes());
            t[28..32].copy_from_slice(&(aid / 100_000 + 1).to_le_bytes());
            let balance = if rng.below(4) == 0 {
                rng.below(10_000) as i32 - 5_000
            } else {
                0
            };
            t[32..36].copy_from_slice(&balance.to_le_bytes());
            t[36] = 0xAB; // 1-byte varlena header of an 84-byte char(84)
            t[37..].fill(b' ');
        }
    }
    out
}
