#!/bin/sh
# bench/incremental.sh — per-event encode cost against session length (DESIGN §3.1): main's
# binary (bench model, full recompute, one length at a time) next to this build's
# `bench model --incremental` (full recompute and resumed, checked byte for byte), gru4rec d=64
# 1 layer max_len 50, at batch 1 and 64, one thread. Usage: bench/incremental.sh NEW_BIN [OLD_BIN]
set -eu
NEW=$1
OLD=${2:-}
for B in 1 64; do
    echo "== batch $B"
    "$NEW" bench model --arch gru4rec --d 64 --layers 1 --len 50 --batch "$B" --threads 1 \
        --reps 9 --incremental | grep -v '^{'
    if [ -n "$OLD" ]; then
        for L in 1 5 10 20 50; do
            ms=$("$OLD" bench model --arch gru4rec --d 64 --layers 1 --len "$L" --batch "$B" \
                 --threads 1 --reps 9 -k 10 | tail -1 | sed 's/.*"ms_per_batch":\([0-9.]*\).*/\1/')
            echo "old binary len $L: $(echo "$ms * 1000000 / $B" | bc) ns/event (full recompute)"
        done
    fi
done
