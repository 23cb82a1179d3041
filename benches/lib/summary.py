"""What the benchmark scripts' summaries share: reading their result files (TSV written
by the scripts, hyperfine's JSON exports) and printing Markdown tables. Imported by the
summaries embedded in compare.sh's summarize.py, s3.sh, wal.sh and pg.sh."""

import csv
import json
import os


def read_tsv(results, name):
    """Rows of RESULTS/NAME as dicts; [] when the file is missing (a bench not run)."""
    path = os.path.join(results, name)
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def group(results, name):
    """hyperfine's results in RESULTS/NAME.json by command name; {} when missing."""
    path = os.path.join(results, f"{name}.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {r["command"]: r for r in json.load(f)["results"]}


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)
