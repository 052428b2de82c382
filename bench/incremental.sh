#!/bin/sh
# bench/incremental.sh — per-event encode cost against session length (DESIGN §3.1): main's
# binary (bench model, full recompute, one length at a time) next to this build's
# `bench model --incremental` (full recompute and resumed or cached, checked byte for byte), at
# batch 1 and 64, one thread. ARCH=gru4rec (default): d=64, 1 layer, max_len 50, resumed from
# the stored state; ARCH=gpt2: d=64, 2 layers, 2 heads, max_len 50, through the encode cache.
# Usage: [ARCH=gpt2] bench/incremental.sh NEW_BIN [OLD_BIN]
set -eu
NEW=$1
OLD=${2:-}
ARCH=${ARCH:-gru4rec}
case $ARCH in
gru4rec) SHAPE="--arch gru4rec --d 64 --layers 1" ;;
gpt2) SHAPE="--arch gpt2 --d 64 --layers 2 --heads 2" ;;
*) echo "ARCH: gru4rec or gpt2" >&2; exit 2 ;;
esac
for B in 1 64; do
    echo "== $ARCH batch $B"
    # shellcheck disable=SC2086
    "$NEW" bench model $SHAPE --len 50 --batch "$B" --threads 1 --reps 9 --incremental |
        grep -v '^{'
    if [ -n "$OLD" ]; then
        for L in 1 5 10 20 50; do
            # shellcheck disable=SC2086
            ms=$("$OLD" bench model $SHAPE --len "$L" --batch "$B" --threads 1 --reps 9 -k 10 |
                 tail -1 | sed 's/.*"ms_per_batch":\([0-9.]*\).*/\1/')
            echo "old binary len $L: $(echo "$ms * 1000000 / $B" | bc) ns/event (full recompute)"
        done
    fi
done
