"""What the benchmark scripts' summaries share: reading their result files (TSV written
by the scripts, hyperfine's JSON exports) and printing Markdown tables. Imported by the
summaries embedded in compare.sh's summarize.py, s3.sh, wal.sh, pg.sh and pitr.sh."""

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


# What pg.sh's and pitr.sh's summaries format alike.
def num(v):
    """v as a float; None when missing or not a number (a TSV cell, a JSON field)."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def mb(b):
    return f"{b / 1e6:,.1f}" if b is not None else "n/a"


def mib(kb):
    return f"{kb / 1024:.0f}" if kb is not None else "n/a"


def verdict(ok):
    return "met" if ok else "**NOT met**"


def facts(results):
    """RESULTS/facts.tsv (key, value) as a dict."""
    return {r["key"]: r["value"] for r in read_tsv(results, "facts.tsv")}


def rss(results):
    """RESULTS/rss.tsv rows by (bench, label)."""
    return {(r["bench"], r["label"]): r for r in read_tsv(results, "rss.tsv")}


def print_env(results):
    """RESULTS/env.txt, indented (a Markdown code block), when there is one."""
    env = os.path.join(results, "env.txt")
    if os.path.exists(env):
        with open(env) as f:
            print("".join("    " + line for line in f))
