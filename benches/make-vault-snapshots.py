#!/usr/bin/env python3
"""make-vault-snapshots.py OUTDIR STATE_MIB -- two nights of a synthetic Vault's raft snapshots.

Fixed seed, so every run makes the same bytes. state.bin is shaped like Vault's FSM snapshot:
storage entries in key order, each a length-delimited protobuf StorageEntry{1: key, 2: value},
values random (the barrier encrypts them), 100 B to 4 KiB, under Vault-like key prefixes
(leases, tokens, KV secrets, policies). The .snap files are what hashicorp/raft-snapshot writes:
a gzip (level 6) ustar archive of meta.json, state.bin and SHA256SUMS, members 0600.

Night 2 is night 1 after a day of a slowly changing Vault: CHANGE_PCT % of the entries rewritten
(new ciphertext, same length), INSERT_PCT % new entries and DELETE_PCT % removed, at random
places in the key space (environment; defaults 1, 1 and 0.3). Writes OUTDIR/night1.snap,
OUTDIR/night2.snap and OUTDIR/facts.tsv (entries, state bytes, changed entries).
"""

import gzip
import hashlib
import io
import json
import os
import random
import sys
import tarfile

PREFIXES = [
    "logical/7f3c9a2e-4b1d-4e8a-9c6f-2d5b8e1a3c7f/secret/",
    "sys/expire/id/auth/token/create/",
    "sys/token/id/h",
    "sys/policy/",
    "core/",
    "logical/0b5e2d8c-9a4f-4c3b-8e1d-6f7a2c9b4e5d/kv/",
]
MTIME = 1764115200


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def value(seed, version, length):
    """An entry's ciphertext: the same (seed, version) always gives the same bytes."""
    return random.Random(seed * 1_000_003 + version).randbytes(length)


def state_bin(entries, path):
    """Writes state.bin for {key: (seed, version, length)} in key order; returns (size, sha256)."""
    digest, size = hashlib.sha256(), 0
    with open(path, "wb") as f:
        for key in sorted(entries):
            seed, version, length = entries[key]
            k = key.encode()
            v = value(seed, version, length)
            body = b"\x0a" + varint(len(k)) + k + b"\x12" + varint(len(v)) + v
            record = varint(len(body)) + body
            f.write(record)
            digest.update(record)
            size += len(record)
    return size, digest.hexdigest()


def snap(entries, index, term, scratch, out):
    state = os.path.join(scratch, "state.bin")
    size, state_sum = state_bin(entries, state)
    meta = (json.dumps({
        "Version": 1, "ID": f"{term}-{index}-{MTIME}000", "Index": index, "Term": term,
        "Peers": "ka5wMTI3LjAuMC4xOjgyMDE=",
        "Configuration": {"Servers": [{"Suffrage": 0, "ID": "vault-0", "Address": "vault-0:8201"}]},
        "ConfigurationIndex": 1, "Size": size,
    }, separators=(",", ":")) + "\n").encode()
    sums = f"{hashlib.sha256(meta).hexdigest()}  meta.json\n{state_sum}  state.bin\n".encode()
    tmp = out + ".partial"
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for name, data in (("meta.json", meta), ("state.bin", None), ("SHA256SUMS", sums)):
                info = tarfile.TarInfo(name)
                info.mode, info.mtime = 0o600, MTIME
                if data is None:
                    info.size = size
                    with open(state, "rb") as f:
                        tar.addfile(info, f)
                else:
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, out)
    os.remove(state)
    return size


def main():
    outdir, mib = sys.argv[1], float(sys.argv[2])
    change, insert, delete = (float(os.environ.get(k, d)) for k, d in
                              (("CHANGE_PCT", 1), ("INSERT_PCT", 1), ("DELETE_PCT", 0.3)))
    rng = random.Random(20261126)
    entries, serial, total = {}, 0, 0

    def add():
        nonlocal serial
        serial += 1
        key = f"{rng.choice(PREFIXES)}{rng.getrandbits(64):016x}{serial}"
        length = 100 + rng.randrange(4000)
        entries[key] = (serial, 0, length)
        return len(key) + length

    while total < mib * 2**20:
        total += add()
    os.makedirs(outdir, exist_ok=True)
    size1 = snap(entries, 104_000, 7, outdir, os.path.join(outdir, "night1.snap"))
    n = len(entries)
    keys = sorted(entries)
    changed = rng.sample(keys, int(n * change / 100))
    for key in changed:
        seed, version, length = entries[key]
        entries[key] = (seed, version + 1, length)
    for _ in range(int(n * insert / 100)):
        add()
    for key in rng.sample(sorted(entries), int(n * delete / 100)):
        del entries[key]
    size2 = snap(entries, 110_200, 7, outdir, os.path.join(outdir, "night2.snap"))
    with open(os.path.join(outdir, "facts.tsv"), "w") as f:
        f.write("key\tvalue\n")
        for k, v in (("entries", n), ("state1_bytes", size1), ("state2_bytes", size2),
                     ("changed_entries", len(changed)), ("inserted_entries", int(n * insert / 100)),
                     ("deleted_entries", int(n * delete / 100))):
            f.write(f"{k}\t{v}\n")


if __name__ == "__main__":
    main()
