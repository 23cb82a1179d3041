#!/usr/bin/env python3
"""sqlite_gen.py -- the SQLite database of benches/sqlite.sh, made from a fixed seed.

  sqlite_gen.py create DB MB     WAL mode, 4 KiB pages, rows of mixed text, integers and
                                 blobs (about half random bytes, so ~2x at zstd -3) plus an
                                 index on a random column, until the file is about MB MiB
  sqlite_gen.py update DB PCT    update PCT % of the rows, scattered (text, blob and the
                                 indexed column change, so index pages change too)
  sqlite_gen.py append DB PCT    append PCT % new rows
  sqlite_gen.py floor A B OUT    write the pages of B that differ from A (or that A lacks)
                                 to OUT, and print how many there were

Every command checkpoints (TRUNCATE) at the end, so the file alone is the database.
"""
import os
import random
import sqlite3
import sys

PAGE = 4096
WORDS = ("invoice customer order shipped pending refund warehouse berlin paris lisbon "
         "oslo priority standard express account balance credit debit ledger entry "
         "alpha beta gamma delta notes review approved rejected").split()


def row(rng, n):
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 24)))
    blob = rng.randbytes(rng.randint(20, 120)) + bytes(rng.randint(20, 120))
    return (n, rng.randint(0, 1 << 40), text, rng.randint(0, 1000), blob)


def checkpoint(db):
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def create(path, mb):
    rng = random.Random(20261126)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA page_size = {PAGE}")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, k INTEGER, note TEXT, qty INTEGER, data BLOB)")
    db.execute("CREATE INDEX items_k ON items (k)")
    target = mb * 1024 * 1024
    n = 0
    while True:
        db.executemany("INSERT INTO items VALUES (?,?,?,?,?)",
                       [row(rng, n + i + 1) for i in range(20000)])
        db.commit()
        n += 20000
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        if pages * PAGE >= target:
            break
    checkpoint(db)
    print(n)


def count(db):
    return db.execute("SELECT max(id) FROM items").fetchone()[0]


def update(path, pct):
    rng = random.Random(7)
    db = sqlite3.connect(path)
    total = count(db)
    ids = rng.sample(range(1, total + 1), int(total * pct / 100))
    db.executemany("UPDATE items SET k = ?, note = ?, data = ? WHERE id = ?",
                   [(r[1], r[2], r[4], i) for i, r in ((i, row(rng, i)) for i in ids)])
    db.commit()
    checkpoint(db)
    print(len(ids))


def append(path, pct):
    rng = random.Random(11)
    db = sqlite3.connect(path)
    total = count(db)
    extra = int(total * pct / 100)
    db.executemany("INSERT INTO items VALUES (?,?,?,?,?)",
                   [row(rng, total + i + 1) for i in range(extra)])
    db.commit()
    checkpoint(db)
    print(extra)


def floor(a, b, out):
    changed = 0
    with open(a, "rb") as fa, open(b, "rb") as fb, open(out, "wb") as fo:
        while True:
            pb = fb.read(PAGE)
            if not pb:
                break
            if fa.read(PAGE) != pb:
                fo.write(pb)
                changed += 1
    print(changed)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "create":
        create(args[0], int(args[1]))
    elif cmd == "update":
        update(args[0], float(args[1]))
    elif cmd == "append":
        append(args[0], float(args[1]))
    elif cmd == "floor":
        floor(*args)
    else:
        sys.exit(f"unknown command {cmd}")
