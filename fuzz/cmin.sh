#!/usr/bin/env bash
# Shrinks fuzz/corpus/<target> (all targets when none is named) to a few inputs that still
# reach every edge the whole corpus reaches, keeping the seed-* files by name.
#
# `cargo fuzz cmin` keeps every input with a new feature, hit-count buckets and comparison
# operands included: thousands of files for the JSON parsers. Here libFuzzer's greedy set
# cover runs on edges alone (-use_counters=0 -use_cmp=0), which keeps a few hundred.
set -euo pipefail
cd "$(dirname "$0")"
if [ $# -eq 0 ]; then
    set -- $(cargo +nightly fuzz list)
fi
host=$(rustc +nightly -vV | sed -n 's/^host: //p')
for target in "$@"; do
    cargo +nightly fuzz build "$target"
    kept=$(mktemp -d)
    "target/$host/release/$target" -set_cover_merge=1 -use_counters=0 -use_cmp=0 \
        -max_len=1048576 "$kept" "corpus/$target" 2>"$kept.log" || { cat "$kept.log"; exit 1; }
    for seed in "corpus/$target"/seed-*; do
        [ -e "$seed" ] || continue
        rm -f "$kept/$(sha1sum <"$seed" | cut -d' ' -f1)"
        cp "$seed" "$kept/"
    done
    before=$(ls "corpus/$target" | wc -l)
    rm -rf "corpus/$target" "$kept.log"
    chmod 755 "$kept"
    mv "$kept" "corpus/$target"
    echo "$target: $before -> $(ls "corpus/$target" | wc -l) files, $(cat "corpus/$target"/* | wc -c) bytes"
done
