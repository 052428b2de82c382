#!/usr/bin/python3
"""peers.py — the peers streamrec's benchmarks are compared with (issue 2, Performance), on the
same shapes as `streamrec bench`: one JSON line per measurement on stdout.

  /usr/bin/python3 bench/peers.py [--only faiss,torch,sgemm] [--items 100000,1000000]
                                  [--dim 64] [--batch 256] [-k 10] [--len 50] [--reps 5]
                                  [--threads T]

faiss   FAISS IndexFlatIP (Debian python3-faiss) over random float32 N×dim, B queries, top-k:
        {"peer":"faiss_flat_ip","items":N,...,"queries_per_s":..,"gflops":..,"ms_per_batch":..}
torch   PyTorch CPU forward (float32, inference_mode, all cores) of gpt2 written as explicit
        Hugging Face GPT2Model modules (Conv1D addmm, causal attention, ln_f, last position) and
        of gru4rec (nn.Embedding + nn.GRU): {"peer":"torch_gpt2",...,"sessions_per_s":..}
replay  the offline replay a Python team would write (--events FILE --bundle DIR, a gpt2 bundle of
        bench/make_bundle.py and events of bench/gen_events.py): JSON Lines in, each event checked
        and its item looked up in the bundle's vocabulary, sessions of the last max_len items in
        a dict (view/click/add_to_cart/purchase appended; view/click/add_to_cart answered, as
        streamrec's defaults), the answered events in batches of --batch through the same GPT-2
        in PyTorch (left-padded, attention-masked, last position), exact top-k over the
        catalogue by FAISS IndexFlatIP (k + max_len candidates, seen items excluded: torch's
        matmul + topk was 3x slower here), one JSON line
        out per answer: {"peer":"torch_replay","events":..,"events_per_s":..,"recommendations":..}
        Weights are random with the bundle's shapes: the cost is the same.
sgemm   the machine's sgemm rate (numpy -> OpenBLAS) on the retrieval shape C[M×N] = Q[M×K]·Eᵀ
        with M=batch, K=dim, N = tile sizes and N=items: {"peer":"sgemm",...,"gflops":..}
Threads: --threads T (default: all cores) for FAISS/OpenMP, torch and OpenBLAS, set before any
of them loads; each peer runs in its own process; every record says its "threads". Every figure is the median of
at least --reps timed runs (and at least 0.5 s of them) after a warm-up.
Random inputs are seeded; figures are from this machine at this moment, not constants.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
# --threads is read before numpy loads: OpenBLAS and OpenMP size their pools from the environment
for _i, _x in enumerate(sys.argv[:-1]):
    if _x == "--threads" and int(sys.argv[_i + 1]) > 0:
        CORES = int(sys.argv[_i + 1])
os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = str(CORES)

import numpy as np  # noqa: E402


def timed(fn, reps, min_s=0.5):
    """Median seconds of fn over at least `reps` runs and at least min_s of runs (1000 at most),
    after one warm-up: fast shapes get many runs, which steadies them on a shared machine."""
    fn()  # warm-up
    ts, total = [], 0.0
    while len(ts) < reps or (total < min_s and len(ts) < 1000):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
        total += ts[-1]
    return statistics.median(ts)


def emit(rec):
    print(json.dumps(rec), flush=True)


# ---- (a) FAISS ---------------------------------------------------------------------------


def bench_faiss(a):
    import faiss
    faiss.omp_set_num_threads(CORES)
    rng = np.random.default_rng(1)
    for n in a.items:
        xb = rng.standard_normal((n, a.dim), dtype=np.float32)
        xq = rng.standard_normal((a.batch, a.dim), dtype=np.float32)
        index = faiss.IndexFlatIP(a.dim)
        index.add(xb)
        reps = a.reps if n <= 200000 else max(3, a.reps // 2)
        t = timed(lambda: index.search(xq, a.k), reps)
        emit({"peer": "faiss_flat_ip", "faiss": faiss.__version__, "items": n, "dim": a.dim,
              "batch": a.batch, "k": a.k, "threads": CORES, "queries_per_s": a.batch / t,
              "gflops": 2.0 * a.batch * n * a.dim / t / 1e9, "ms_per_batch": t * 1e3})
        del index, xb


# ---- (b) PyTorch forward -----------------------------------------------------------------


def bench_torch(a):
    import torch
    import torch.nn as nn
    torch.set_num_threads(CORES)
    torch.manual_seed(1)

    class Conv1D(nn.Module):  # HF layout: y = x @ W + b, W [in, out]
        def __init__(self, n_in, n_out):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(n_in, n_out) * 0.02)
            self.bias = nn.Parameter(torch.zeros(n_out))

        def forward(self, x):
            shape = x.shape[:-1] + (self.weight.shape[1],)
            return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(shape)

    class Block(nn.Module):
        def __init__(self, d, h, ff, max_len):
            super().__init__()
            self.h, self.dh = h, d // h
            self.ln_1, self.ln_2 = nn.LayerNorm(d, eps=1e-5), nn.LayerNorm(d, eps=1e-5)
            self.c_attn, self.c_proj = Conv1D(d, 3 * d), Conv1D(d, d)
            self.c_fc, self.mlp_proj = Conv1D(d, ff), Conv1D(ff, d)
            self.register_buffer("causal", torch.ones(max_len, max_len, dtype=torch.bool).tril())

        def forward(self, x):
            B, L, d = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=2)
            q = q.view(B, L, self.h, self.dh).transpose(1, 2)
            k = k.view(B, L, self.h, self.dh).transpose(1, 2)
            v = v.view(B, L, self.h, self.dh).transpose(1, 2)
            w = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.dh)
            w = torch.where(self.causal[:L, :L], w, torch.tensor(torch.finfo(w.dtype).min))
            o = torch.matmul(w.softmax(-1), v).transpose(1, 2).reshape(B, L, d)
            x = x + self.c_proj(o)
            f = nn.functional.gelu(self.c_fc(self.ln_2(x)), approximate="tanh")
            return x + self.mlp_proj(f)

    class GPT2(nn.Module):
        def __init__(self, V, d, layers, h, ff, max_len):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(V, d), nn.Embedding(max_len, d)
            self.h = nn.ModuleList([Block(d, h, ff, max_len) for _ in range(layers)])
            self.ln_f = nn.LayerNorm(d, eps=1e-5)

        def forward(self, items):
            L = items.shape[1]
            x = self.wte(items) + self.wpe(torch.arange(L))
            for b in self.h:
                x = b(x)
            return self.ln_f(x)[:, -1]

    class GRU4Rec(nn.Module):
        def __init__(self, V, H, layers):
            super().__init__()
            self.item_embedding = nn.Embedding(V, H)
            self.gru = nn.GRU(H, H, num_layers=layers, batch_first=True)

        def forward(self, items):
            out, _ = self.gru(self.item_embedding(items))
            return out[:, -1]

    d, L, B, ff = a.dim, a.len, a.batch, 4 * a.dim
    items = torch.randint(2, a.model_items, (B, L))
    specs = [
        ("torch_gpt2", "gpt2", a.layers, GPT2(a.model_items, d, a.layers, a.heads, ff, L),
         a.layers * L * (2 * d * 3 * d + 2 * d * d + 2 * 2 * d * ff) + a.layers * 2 * 2 * d * L * (L + 1) / 2),
        ("torch_gru4rec", "gru4rec", a.gru_layers, GRU4Rec(a.model_items, d, a.gru_layers),
         a.gru_layers * L * 2 * (2 * d * 3 * d)),
    ]
    for peer, arch, layers, model, flops_per_session in specs:
        model.eval()
        with torch.inference_mode():
            t = timed(lambda: model(items), a.reps)
        rec = {"peer": peer, "torch": torch.__version__, "arch": arch, "d": d, "layers": layers,
               "len": L, "batch": B, "items": a.model_items, "threads": CORES,
               "sessions_per_s": B / t, "gflops": flops_per_session * B / t / 1e9,
               "ms_per_batch": t * 1e3}
        if arch == "gpt2":
            rec.update(heads=a.heads, d_ff=ff)
        emit(rec)


# ---- (d) replay ---------------------------------------------------------------------------


def bench_replay(a):
    import torch
    import torch.nn as nn
    torch.set_num_threads(CORES)
    torch.manual_seed(1)
    with open(os.path.join(a.bundle, "bundle.json")) as f:
        meta = json.load(f)
    m = meta["model"]
    d, layers, heads, ff, L = m["d_model"], m["n_layers"], m["n_heads"], m["d_ff"], m["max_len"]
    first = meta["items"]["first_index"]
    vocab, names = {}, {}
    with open(os.path.join(a.bundle, meta["items"]["vocab"])) as f:
        next(f)
        for line in f:
            j, item = line.rstrip("\n").split("\t")
            vocab[item] = int(j)
            names[int(j)] = item
    V = max(vocab.values()) + 1

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(d, eps=1e-5), nn.LayerNorm(d, eps=1e-5)
            self.c_attn, self.c_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.c_fc, self.mlp_proj = nn.Linear(d, ff), nn.Linear(ff, d)

        def forward(self, x, mask):
            B, T, _ = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=2)
            q, k, v = (t.view(B, T, heads, d // heads).transpose(1, 2) for t in (q, k, v))
            w = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d // heads)
            w = w.masked_fill(~mask, torch.finfo(w.dtype).min)
            o = torch.matmul(w.softmax(-1), v).transpose(1, 2).reshape(B, T, d)
            x = x + self.c_proj(o)
            return x + self.mlp_proj(nn.functional.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    wte, wpe = nn.Embedding(V, d), nn.Embedding(L, d)
    blocks = nn.ModuleList([Block() for _ in range(layers)])
    ln_f = nn.LayerNorm(d, eps=1e-5)
    causal = torch.ones(L, L, dtype=torch.bool).tril()

    def encode(seqs):
        T = max(len(x) for x in seqs)
        ids = torch.zeros(len(seqs), T, dtype=torch.long)
        pos = torch.zeros(len(seqs), T, dtype=torch.long)
        keep = torch.zeros(len(seqs), T, dtype=torch.bool)
        for i, x in enumerate(seqs):  # left-padded: the last position is the session's last item
            ids[i, T - len(x):] = torch.tensor(x)
            pos[i, T - len(x):] = torch.arange(len(x))
            keep[i, T - len(x):] = True
        mask = (causal[:T, :T].unsqueeze(0) & keep.unsqueeze(1)).unsqueeze(1)
        x = wte(ids) + wpe(pos)
        for b in blocks:
            x = b(x, mask)
        return ln_f(x[:, -1])

    import faiss
    faiss.omp_set_num_threads(CORES)
    index = faiss.IndexFlatIP(d)
    index.add(np.ascontiguousarray(wte.weight.detach()[first:].numpy()))
    stored = {"view", "click", "add_to_cart", "purchase"}
    answered = {"view", "click", "add_to_cart"}
    k = a.k

    def flush(batch, out):
        with torch.inference_mode():
            h = encode([s for _, s in batch]).numpy()
        D, I = index.search(np.ascontiguousarray(h), k + L)
        for (ev, seq), sc, ix in zip(batch, D.tolist(), I.tolist()):
            seen, items = set(seq), []
            for s_, j in zip(sc, ix):
                if j + first not in seen:
                    items.append({"item_id": names[j + first], "score": round(s_, 6)})
                if len(items) == k:
                    break
            out.write(json.dumps({"session_id": ev["session_id"], "event_timestamp_ms": ev["timestamp_ms"],
                                  "model_version": meta["version"], "items": items}) + "\n")
        return len(batch)

    def run():
        sessions, batch, n_ev, n_rec, bad = {}, [], 0, 0, 0
        with open(a.events) as f, open(os.devnull, "w") as out:
            for line in f:
                n_ev += 1
                try:
                    ev = json.loads(line)
                    sid, item, typ = ev["session_id"], ev["item_id"], ev["event_type"]
                    int(ev["timestamp_ms"])
                except (ValueError, KeyError, TypeError):
                    bad += 1
                    continue
                if typ not in stored:
                    continue
                seq = sessions.setdefault(sid, [])
                seq.append(vocab.get(item, 1))
                del seq[:-L]
                if typ in answered:
                    batch.append((ev, list(seq)))
                    if len(batch) == a.batch:
                        n_rec += flush(batch, out)
                        batch = []
            if batch:
                n_rec += flush(batch, out)
        return n_ev, n_rec

    run()  # warm-up (and the file in the page cache)
    best = None
    for _ in range(max(1, a.reps // 2)):
        t0 = time.perf_counter()
        n_ev, n_rec = run()
        t = time.perf_counter() - t0
        best = t if best is None else min(best, t)
    emit({"peer": "torch_replay", "torch": torch.__version__, "arch": "gpt2", "d": d,
          "layers": layers, "items": V - first, "batch": a.batch, "k": k, "threads": CORES,
          "events": n_ev, "recommendations": n_rec, "events_per_s": n_ev / best, "s": best})


# ---- (c) sgemm rate ----------------------------------------------------------------------


def bench_sgemm(a):
    rng = np.random.default_rng(2)
    q = rng.standard_normal((a.batch, a.dim), dtype=np.float32)
    for n in sorted(set(a.tiles + [n for n in a.items if n <= 1000000])):
        e = rng.standard_normal((n, a.dim), dtype=np.float32)
        c = np.empty((a.batch, n), dtype=np.float32)
        et = e.T
        reps = a.reps if n <= 200000 else max(3, a.reps // 2)
        t = timed(lambda: np.matmul(q, et, out=c), reps)
        emit({"peer": "sgemm", "blas": "numpy/OpenBLAS", "m": a.batch, "n": n, "k": a.dim,
              "threads": CORES, "gflops": 2.0 * a.batch * n * a.dim / t / 1e9, "ms": t * 1e3})
        del e, c


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default="sgemm,faiss,torch")
    p.add_argument("--items", default="100000,1000000")
    p.add_argument("--tiles", default="1024,4096,16384")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--len", type=int, default=50)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--gru-layers", type=int, default=1)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--model-items", type=int, default=10000)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="0: all cores")
    p.add_argument("--events", help="replay: a JSON Lines file of events")
    p.add_argument("--bundle", help="replay: a gpt2 bundle directory")
    a = p.parse_args()
    a.items = [int(float(x)) for x in a.items.split(",") if x]
    a.tiles = [int(float(x)) for x in a.tiles.split(",") if x]
    parts = [x for x in a.only.split(",") if x]
    if len(parts) == 1:
        {"faiss": bench_faiss, "torch": bench_torch, "sgemm": bench_sgemm,
         "replay": bench_replay}[parts[0]](a)
        return 0
    # one process per peer: OpenMP (FAISS, torch) and OpenBLAS worker threads keep spinning after
    # their work, and a later peer in the same process would share the cores with them
    for part in parts:
        argv = [sys.executable, os.path.abspath(__file__), "--only", part] + [
            x for i, x in enumerate(sys.argv[1:]) if x != "--only" and (i == 0 or sys.argv[i] != "--only")]
        rc = subprocess.call(argv)
        if rc:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
