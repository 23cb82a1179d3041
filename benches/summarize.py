#!/usr/bin/env python3
"""summarize.py RESULTS_DIR -- print the summary of a compare.sh run as Markdown.

Reads what compare.sh leaves in RESULTS_DIR: inputs.tsv (input, file, bytes), the hyperfine
JSON exports INPUT-GROUP.json, stored.tsv (bytes each tool stored) and rss.tsv (peak RSS).
Throughput is input bytes / mean wall time, in MB/s (10^6 bytes per second); a ratio
"stowage/X" is stowage's throughput over X's (above 1: stowage is faster).
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from summary import read_tsv, table  # noqa: E402  (benches/lib/summary.py)

GROUPS = ["first", "second", "cat", "verify"]

# (group, stowage command, other command, minimum ratio or None, label)
RATIO_TARGETS = [
    ("first", "stowage backup", "zstd -3 -T2", 0.8, "first backup vs zstd -3 -T2"),
    ("first", "stowage backup", "zstd -3 -T2 > file", None, "first backup vs zstd -3 -T2 > file (same disk)"),
    ("first", "stowage backup", "restic backup", 2.0, "first backup vs restic backup"),
    ("cat", "stowage cat", "zstd -d -T2", 0.8, "cat vs zstd -d -T2"),
    ("cat", "stowage restore", "zstd -d -T2", None, "restore vs zstd -d -T2"),
    ("cat", "stowage cat", "restic restore", 1.5, "cat vs restic restore"),
    ("cat", "stowage restore", "restic restore", 1.5, "restore vs restic restore"),
    ("cat", "stowage cat", "restic dump", None, "cat vs restic dump"),
    ("verify", "stowage verify --read-data", "stowage cat", 0.8, "verify --read-data vs cat"),
]
SECOND_BACKUP_MIN_MBS = 1000.0
RSS_MAX_MIB = 200.0


def verdict(value, minimum):
    if value is None:
        return "n/a"
    if minimum is None:
        return ""
    return "PASS" if value >= minimum else "FAIL"


def main():
    results = sys.argv[1] if len(sys.argv) > 1 else "."
    inputs = read_tsv(results, "inputs.tsv")
    size = {r["input"]: int(r["bytes"]) for r in inputs}
    stored = read_tsv(results, "stored.tsv")

    # means[input][group][command] = (mean, stddev)
    means = {}
    for inp in size:
        for group in GROUPS:
            path = os.path.join(results, f"{inp}-{group}.json")
            if not os.path.exists(path):
                continue
            with open(path) as f:
                data = json.load(f)
            for r in data["results"]:
                means.setdefault(inp, {}).setdefault(group, {})[r["command"]] = (
                    r["mean"], r.get("stddev") or 0.0)

    def mbs(inp, seconds):
        return size[inp] / seconds / 1e6

    env = os.path.join(results, "env.txt")
    if os.path.exists(env):
        with open(env) as f:
            print("".join("    " + line for line in f))
    print("## Inputs\n")
    rows = []
    for inp, b in size.items():
        st = {r["tool"]: int(r["stored_bytes"]) for r in stored if r["input"] == inp}
        def pct(tool):
            return f"{st[tool] / b * 100:.1f}%" if tool in st else "n/a"
        rows.append([inp, b, f"{b / 2**20:.1f}", pct("zstd -3"), pct("stowage"), pct("restic")])
    print(table(["input", "bytes", "MiB", "zstd -3 size", "stowage repo size", "restic repo size"], rows))

    print("\n## Wall time (hyperfine mean ± stddev) and throughput\n")
    rows = []
    for inp in size:
        for group in GROUPS:
            for cmd, (mean, sd) in means.get(inp, {}).get(group, {}).items():
                rows.append([inp, group, cmd, f"{mean:.3f} ± {sd:.3f}", f"{mbs(inp, mean):.0f}"])
    print(table(["input", "group", "command", "mean s", "MB/s"], rows) if rows else "(no hyperfine results)")

    print("\n## Ratios against the targets (throughput of stowage / the other)\n")
    rows = []
    for inp in size:
        m = means.get(inp, {})
        for group, mine, other, minimum, label in RATIO_TARGETS:
            a = m.get(group, {}).get(mine)
            b = m.get(group, {}).get(other)
            ratio = b[0] / a[0] if a and b else None
            if ratio is None and minimum is None:
                continue
            rows.append([inp, label, "n/a" if ratio is None else f"{ratio:.2f}x",
                         "" if minimum is None else f">= {minimum}x", verdict(ratio, minimum)])
        s2 = m.get("second", {}).get("stowage backup")
        v = mbs(inp, s2[0]) if s2 else None
        rows.append([inp, "second backup", "n/a" if v is None else f"{v:.0f} MB/s",
                     f">= {SECOND_BACKUP_MIN_MBS:.0f} MB/s", verdict(v, SECOND_BACKUP_MIN_MBS)])
    print(table(["input", "what", "value", "target", "verdict"], rows))

    rss = read_tsv(results, "rss.tsv")
    if rss:
        print("\n## Peak RSS of one backup (/usr/bin/time -v), MiB\n")
        labels = list(dict.fromkeys(r["label"] for r in rss))
        tools = list(dict.fromkeys(r["tool"] for r in rss))
        rows = []
        for label in labels:
            row = [label, f"{int(next(r['bytes'] for r in rss if r['label'] == label)) / 2**20:.0f}"]
            verdict_s = ""
            for tool in tools:
                r = next((r for r in rss if r["label"] == label and r["tool"] == tool), None)
                if r is None or not r["maxrss_kb"]:
                    row.append("n/a")
                    continue
                mib = int(r["maxrss_kb"]) / 1024
                cell = f"{mib:.1f}"
                if r["exit"] != "0":
                    cell += f" (exit {r['exit']})"
                row.append(cell)
                if tool == "stowage" and label not in size:  # the 40 MiB and big streams
                    ok = mib <= RSS_MAX_MIB and r["exit"] == "0"
                    verdict_s = f"{'PASS' if ok else 'FAIL'} (<= {RSS_MAX_MIB:.0f} MiB)"
            rows.append(row + [verdict_s])
        print(table(["input", "MiB in"] + tools + ["stowage target"], rows))


if __name__ == "__main__":
    main()
