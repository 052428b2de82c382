#!/usr/bin/python3
"""make_reference.py — developer tool (not in CI's path): writes the reference bundles and
expected top-k under tests/data/ref/<case>/ that tests/gen/compare_score.py checks
`streamrec score` against.

Run with Debian's python3 (torch, numpy):  /usr/bin/python3 tests/gen/make_reference.py [OUTDIR]
  or  ... make_reference.py --check BUNDLE SESSIONS EXPECTED   (recompute and compare, e.g. the
  shared fixtures, to cross-check this reference against an independent one)

Per case it writes OUTDIR/<case>/{bundle.json, model.safetensors, items.tsv} and
OUTDIR/<case>.sessions.jsonl ({"items": [...]}, oldest first) and OUTDIR/<case>.expected.jsonl
({"items": top-k ids, "scores": float64 scores, "next_score": best score left out}).

Expected values are computed in float64 from the weights exactly as stored (F16/BF16 weights
are rounded first, then widened), following DESIGN.md §3:
  gpt2    an explicit float64 implementation of Hugging Face GPT2Model semantics (Conv1D
          layout, causal attention, ln_f at the last position), cross-checked per session
          against nn.TransformerEncoderLayer(norm_first=True, batch_first=True) with a causal
          mask (the two must agree to 1e-9, or the script stops);
  gru4rec nn.GRU in float64 (batch_first, h0 = 0), cross-checked against explicit gate math.
Scores over indices first_index..V-1 plus output.bias when present; ties go to the lower
index; raw top-k (nothing excluded). Unknown ids map to oov_index. Deterministic by seed.
"""
import json
import math
import os
import sys

import numpy as np
import torch

K = 10
N_SESSIONS = 50
AGREE_TOL = 1e-9

# ---- cases -------------------------------------------------------------------------------

CASES = [
    # name, arch, dims, dtype policy, layout
    dict(name="gpt2_f16", arch="gpt2", V=2002, d=32, layers=2, heads=2, d_ff=128, max_len=12,
         act="gelu_tanh", dtype="F16", seed=101),
    dict(name="gpt2_bf16", arch="gpt2", V=1502, d=32, layers=2, heads=4, d_ff=64, max_len=10,
         act="gelu_tanh", dtype="BF16", seed=102),
    dict(name="gpt2_prefix_bias", arch="gpt2", V=1202, d=32, layers=2, heads=2, d_ff=96,
         max_len=16, act="gelu_tanh", dtype="F32", prefix="transformer.", bias=True, seed=103),
    dict(name="gpt2_relu_3l4h", arch="gpt2", V=1002, d=32, layers=3, heads=4, d_ff=64, max_len=12,
         act="relu", dtype="F32", seed=104),
    dict(name="gpt2_gelu_erf", arch="gpt2", V=1002, d=32, layers=2, heads=2, d_ff=128, max_len=12,
         act="gelu", dtype="F32", eps=1e-6, seed=105),
    dict(name="gru4rec_2l_bias", arch="gru4rec", V=1502, d=24, layers=2, max_len=15,
         dtype="F32", bias=True, seed=106),
    # 10^5+ catalogue: item table in F16 (halves the committed size), GRU weights F32 ("mixed")
    dict(name="gru4rec_100k", arch="gru4rec", V=100005, d=16, layers=1, max_len=20,
         dtype="F16_TABLE", seed=107, lean_vocab=True),
    # NVTabular Categorify layout: 0 pad, 1 null, 2 OOV, vocabulary from 3
    dict(name="gpt2_nvt_first3", arch="gpt2", V=1203, d=24, layers=2, heads=3, d_ff=48,
         max_len=10, act="gelu_tanh", dtype="F32", first=3, oov=2, seed=108),
]

# ---- bundle files and float64 references: shared with deploy/model/ (srbundle.py) ---------

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy", "model"))
from srbundle import (gpt2_explicit, gpt2_torch, gpt2_torch_layers, gru_explicit,  # noqa: E402
                      gru_torch, load_bundle, round_to, write_safetensors)


# ---- random weights ----------------------------------------------------------------------


def make_weights(c, rng):
    """Returns an ordered dict name -> float64 array (bundle-relative names, no prefix)."""
    V, d, L = c["V"], c["d"], c["layers"]
    w = {}
    if c["arch"] == "gpt2":
        ff = c["d_ff"]
        w["wte.weight"] = rng.normal(0, 0.5, (V, d))
        w["wpe.weight"] = rng.normal(0, 0.3, (c["max_len"], d))
        for i in range(L):
            p = "h.%d." % i
            w[p + "ln_1.weight"] = 1.0 + rng.normal(0, 0.2, d)
            w[p + "ln_1.bias"] = rng.normal(0, 0.1, d)
            w[p + "attn.c_attn.weight"] = rng.normal(0, 1.0 / math.sqrt(d), (d, 3 * d))
            w[p + "attn.c_attn.bias"] = rng.normal(0, 0.1, 3 * d)
            w[p + "attn.c_proj.weight"] = rng.normal(0, 1.0 / math.sqrt(d), (d, d))
            w[p + "attn.c_proj.bias"] = rng.normal(0, 0.1, d)
            w[p + "ln_2.weight"] = 1.0 + rng.normal(0, 0.2, d)
            w[p + "ln_2.bias"] = rng.normal(0, 0.1, d)
            w[p + "mlp.c_fc.weight"] = rng.normal(0, 1.0 / math.sqrt(d), (d, ff))
            w[p + "mlp.c_fc.bias"] = rng.normal(0, 0.1, ff)
            w[p + "mlp.c_proj.weight"] = rng.normal(0, 1.0 / math.sqrt(ff), (ff, d))
            w[p + "mlp.c_proj.bias"] = rng.normal(0, 0.1, d)
        w["ln_f.weight"] = 1.0 + rng.normal(0, 0.2, d)
        w["ln_f.bias"] = rng.normal(0, 0.1, d)
    else:
        H = d
        s = 1.5 / math.sqrt(H)
        w["item_embedding.weight"] = rng.normal(0, 0.5, (V, H))
        for k in range(L):
            w["gru.weight_ih_l%d" % k] = rng.uniform(-s, s, (3 * H, H))
            w["gru.weight_hh_l%d" % k] = rng.uniform(-s, s, (3 * H, H))
            w["gru.bias_ih_l%d" % k] = rng.uniform(-s, s, 3 * H)
            w["gru.bias_hh_l%d" % k] = rng.uniform(-s, s, 3 * H)
    if c.get("bias"):
        w["output.bias"] = rng.normal(0, 0.5, V)
    return w


def dtype_of(c, name):
    if c["dtype"] == "F16_TABLE":
        return "F16" if name in ("item_embedding.weight", "wte.weight") else "F32"
    return c["dtype"]


# ---- vocabulary and sessions -------------------------------------------------------------


def make_vocab(c, rng):
    V, first = c["V"], c.get("first", 2)
    ids = [None] * V
    if c.get("lean_vocab"):
        for j in range(first, V):
            ids[j] = "p%d" % (j * 7919 % 1000003)
    else:
        used = set()
        for j in range(first, V):
            while True:
                s = "sku-%07d" % rng.integers(0, 10 ** 7)
                if s not in used:
                    break
            used.add(s)
            ids[j] = s
    return ids


def write_vocab(path, c, ids, rng):
    first = c.get("first", 2)
    order = rng.permutation(np.arange(first, c["V"]))
    with open(path, "w") as f:
        if c.get("lean_vocab"):
            f.write("index\titem_id\n")
            for j in order:
                f.write("%d\t%s\n" % (j, ids[j]))
        else:
            f.write("index\titem_id\tcategory\tavailable\n")
            for j in order:
                f.write("%d\t%s\tc%d\t%d\n" % (j, ids[j], j % 7, 0 if j % 11 == 0 else 1))


def make_sessions(c, rng, ids):
    """~N_SESSIONS sessions: one-item ones, ones longer than max_len, ~5 % unknown ids."""
    first, V, ml = c.get("first", 2), c["V"], c["max_len"]
    lens = [1, 1, 1, ml, ml + 1, 2 * ml + 3, 3 * ml]
    while len(lens) < N_SESSIONS:
        lens.append(int(rng.integers(1, 2 * ml + 1)))
    rng.shuffle(lens)
    out = []
    for s, L in enumerate(lens):
        items = []
        for _ in range(L):
            if rng.random() < 0.05:
                items.append("unknown-%d" % rng.integers(0, 10 ** 6))
            else:
                items.append(ids[int(rng.integers(first, V))])
        out.append(items)
    out[0] = ["unknown-only"]  # a one-item session that is all OOV
    return out


# ---- scoring -----------------------------------------------------------------------------


def topk(c, W, vec):
    first = c.get("first", 2)
    E = W["wte.weight"] if c["arch"] == "gpt2" else W["item_embedding.weight"]
    s = (E[first:] @ vec).numpy()
    if "output.bias" in W:
        s = s + W["output.bias"][first:].numpy()
    order = np.argsort(-s, kind="stable")  # stable: ties keep the lower index first
    top = order[:K + 1]
    return [int(j) + first for j in top[:K]], [float(s[j]) for j in top[:K]], float(s[top[K]])


def reference(bdir, sessions):
    """Reads the bundle back from disk (so the files themselves are what is checked) and
    returns (expected records, worst explicit-vs-module disagreement)."""
    c, W, ids = load_bundle(bdir)
    index_of = {s: j for j, s in enumerate(ids) if s is not None}
    if c["arch"] == "gpt2":
        layers = gpt2_torch_layers(c, W)
    else:
        gru = gru_torch(c, W)
    worst, recs = 0.0, []
    with torch.no_grad():
        for items in sessions:
            idx = [index_of.get(s, c["oov"]) for s in items][-c["max_len"]:]
            if c["arch"] == "gpt2":
                v = gpt2_explicit(c, W, idx)
                v2 = gpt2_torch(c, W, layers, idx)
            else:
                x = W["item_embedding.weight"][idx].unsqueeze(0)
                out, _ = gru(x, torch.zeros(c["layers"], 1, c["d"], dtype=torch.float64))
                v = out[0, -1]
                v2 = gru_explicit(c, W, idx)
            diff = float((v - v2).abs().max())
            worst = max(worst, diff)
            if diff > AGREE_TOL:
                sys.exit("%s: explicit and PyTorch-module references disagree by %g" % (bdir, diff))
            top, scores, nxt = topk(c, W, v)
            recs.append({"items": [ids[j] for j in top], "scores": scores, "next_score": nxt})
    return recs, worst


def build_case(c, outdir):
    name = c["name"]
    rng = np.random.default_rng(c["seed"])
    torch.manual_seed(c["seed"])
    first, oov = c.get("first", 2), c.get("oov", 1)
    prefix = c.get("prefix", "")
    raw_w = make_weights(c, rng)
    st = []
    for n, a in raw_w.items():
        dt = dtype_of(c, n)
        _, raw = round_to(dt, a)
        st.append((prefix + n, dt, a.shape, raw))
    bdir = os.path.join(outdir, name)
    os.makedirs(bdir, exist_ok=True)
    write_safetensors(os.path.join(bdir, "model.safetensors"), st)

    model = {"arch": c["arch"], "weights": "model.safetensors", "tensor_prefix": prefix,
             "d_model": c["d"], "n_layers": c["layers"], "max_len": c["max_len"]}
    if c["arch"] == "gpt2":
        model.update(n_heads=c["heads"], d_ff=c["d_ff"], activation=c["act"],
                     layer_norm_eps=c.get("eps", 1e-5))
    items = {"vocab": "items.tsv"}
    if "first" in c or "oov" in c:
        items.update(first_index=first, oov_index=oov)
    bj = {"format": "streamrec-bundle/1", "version": "ref-%s-v1" % name, "model": model,
          "items": items}
    with open(os.path.join(bdir, "bundle.json"), "w") as f:
        json.dump(bj, f, indent=2)
        f.write("\n")

    ids = make_vocab(c, rng)
    write_vocab(os.path.join(bdir, "items.tsv"), c, ids, rng)
    sessions = make_sessions(c, rng, ids)
    recs, worst = reference(bdir, sessions)
    with open(os.path.join(outdir, name + ".sessions.jsonl"), "w") as f:
        for items in sessions:
            f.write(json.dumps({"items": items}) + "\n")
    with open(os.path.join(outdir, name + ".expected.jsonl"), "w") as f:
        for r in recs:
            f.write(json.dumps(r) + "\n")
    print("%-18s V=%-6d %-7s %-9s sessions=%d  max |explicit - torch module| = %.2e"
          % (name, c["V"], c["arch"], c["dtype"], len(sessions), worst))


def check(bdir, sessions_path, expected_path):
    """Recomputes expected output for an existing bundle (e.g. the shared fixtures) and
    compares it with an expected file at 1e-6 relative to each row's top score."""
    with open(sessions_path) as f:
        sessions = [json.loads(l)["items"] for l in f if l.strip()]
    with open(expected_path) as f:
        exp = [json.loads(l) for l in f if l.strip()]
    recs, worst = reference(bdir, sessions)
    bad = 0
    for i, (r, e) in enumerate(zip(recs, exp)):
        scale = max(abs(e["scores"][0]), 1.0)
        same = r["items"] == e["items"] and all(
            abs(a - b) <= 1e-6 * scale for a, b in zip(r["scores"], e["scores"]))
        if not same:
            bad += 1
            print("line %d differs:\n  ours %s\n  file %s" % (i + 1, r, e))
    print("%s: %d/%d lines agree (explicit vs module %.2e)" % (bdir, len(recs) - bad, len(recs), worst))
    return 1 if bad or len(recs) != len(exp) else 0


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    torch.set_num_threads(1)
    if len(sys.argv) == 5 and sys.argv[1] == "--check":
        sys.exit(check(sys.argv[2], sys.argv[3], sys.argv[4]))
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "data", "ref")
    os.makedirs(outdir, exist_ok=True)
    for c in CASES:
        build_case(c, outdir)


if __name__ == "__main__":
    main()
