#!/usr/bin/env bash
# bench/gpu_run.sh — what we run on a lent GPU machine (see BENCHMARKS.md): the CUDA-vs-CPU
# parity test, `score` of every reference case on --device cuda, replay of the event fixture
# on cuda, and the retrieval/model benchmarks on both backends. Binaries and the shared
# libraries they need are built here and carried in $SR_GPU_DIR (bin/, lib/), because the GPU
# image lacks Debian's -dev packages. Prints a summary; full logs go to $OUT when set.
set -u
cd "$(dirname "$0")/.."
G=${SR_GPU_DIR:-.devcarry/gpu}
# a packed copy (tar.xz of gpu/) travels smaller than the libraries themselves
if [ ! -d "$G" ] && [ -f .devcarry/pack/gpu.tar.xz ]; then tar -C .devcarry -xJf .devcarry/pack/gpu.tar.xz; fi
export LD_LIBRARY_PATH=$PWD/$G/lib:${LD_LIBRARY_PATH:-}
B=$PWD/$G/bin
OUT=${OUT:-/tmp/sr-gpu-out}
mkdir -p "$OUT"
# tests were compiled with absolute fixture paths under /work/main
[ -d /work/main/tests ] || { mkdir -p /work && ln -sfn "$PWD" /work/main; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
nproc
echo "== parity"
"$B/test_cuda_parity" > "$OUT/parity.log" 2>&1; echo "test_cuda_parity rc=$?"; tail -25 "$OUT/parity.log"
"$B/test_models" > "$OUT/models.log" 2>&1; echo "test_models rc=$?"
echo "== score on cuda vs float64 references"
for exp in tests/data/gpt2-small tests/data/gru4rec-small tests/data/ref/*.expected.jsonl; do
  c=${exp%.expected.jsonl}
  r=$(python3 tests/gen/compare_score.py --arg=--device --arg=cuda "$B/streamrec" "$c" 2>&1 | tail -1)
  echo "$(basename "$c"): $r"
done
echo "== replay on cuda"
printf 'model.bundle=tests/data/gpt2-small\nstate.backend=memory\ndevice=cuda\n' > "$OUT/r.props"
"$B/streamrec" replay -c "$OUT/r.props" --input tests/data/gpt2-small.events.jsonl \
  --output "$OUT/recs.jsonl" > "$OUT/replay.log" 2>&1; echo "replay rc=$?"
python3 tests/gen/compare_recs.py tests/data/gpt2-small.events.expected.jsonl "$OUT/recs.jsonl" | tail -1
printf 'model.bundle=tests/data/gru4rec-small\nstate.backend=memory\n' > "$OUT/g.props"
for dev in cpu cuda; do
  "$B/streamrec" replay -c "$OUT/g.props" --set device=$dev --input tests/data/gpt2-small.events.jsonl \
    --output "$OUT/g_$dev.jsonl" > /dev/null 2>&1
done
echo "gru4rec replay cuda vs cpu: $(python3 tests/gen/compare_recs.py "$OUT/g_cpu.jsonl" "$OUT/g_cuda.jsonl" | tail -1)"
echo "== benchmarks"
for dev in cuda cpu; do
  for n in 100000 1000000; do
    "$B/streamrec" bench retrieval --items $n --dim 64 --batch 256 -k 10 --device $dev --reps 10 2>&1 | tail -1
  done
  for arch in gpt2 gru4rec; do
    "$B/streamrec" bench model --arch $arch --d 64 --layers 2 --heads 2 --len 50 --batch 256 --device $dev --reps 10 2>&1 | tail -1
  done
done
"$B/streamrec" bench retrieval --items 1000000 --dim 64 --batch 1024 -k 10 --device cuda --reps 10 2>&1 | tail -1
"$B/streamrec" bench model --arch gpt2 --d 64 --layers 2 --heads 2 --len 50 --batch 1024 --device cuda --reps 10 2>&1 | tail -1
