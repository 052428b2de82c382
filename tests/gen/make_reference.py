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
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

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

# ---- safetensors (by hand) ---------------------------------------------------------------


def round_to(dtype, a):
    """Rounds float64 array a to dtype; returns (float64 widened values, raw LE bytes)."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    if dtype == "F32":
        r = a.astype("<f4")
        return r.astype(np.float64), r.tobytes()
    if dtype == "F16":
        r = a.astype("<f2")
        return r.astype(np.float64), r.tobytes()
    if dtype == "BF16":
        t = torch.from_numpy(a.astype(np.float32)).to(torch.bfloat16)
        raw = t.view(torch.int16).numpy().astype("<i2").tobytes()
        return t.to(torch.float64).numpy(), raw
    raise ValueError(dtype)


def write_safetensors(path, tensors):
    """tensors: list of (name, dtype, shape, raw bytes), written in order."""
    header, off = {}, 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    header["__metadata__"] = {"format": "pt", "generator": "streamrec make_reference.py"}
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for _, _, _, raw in tensors:
            f.write(raw)


def read_safetensors(path):
    """Reads a safetensors file back: name -> float64 torch tensor (F32/F16/BF16)."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        raw = blob[base + b:base + e]
        if t["dtype"] == "F32":
            a = np.frombuffer(raw, "<f4").astype(np.float64)
        elif t["dtype"] == "F16":
            a = np.frombuffer(raw, "<f2").astype(np.float64)
        elif t["dtype"] == "BF16":
            a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        else:
            raise ValueError("%s: dtype %s" % (name, t["dtype"]))
        out[name] = torch.from_numpy(a.reshape(t["shape"]).copy())
    return out


def load_bundle(bdir):
    """Reads a bundle directory into (case dict, weights without prefix, ids by index)."""
    with open(os.path.join(bdir, "bundle.json")) as f:
        bj = json.load(f)
    m, it = bj["model"], bj.get("items", {})
    c = dict(name=os.path.basename(os.path.normpath(bdir)), arch=m["arch"], d=m["d_model"],
             layers=m["n_layers"], max_len=m["max_len"], first=it.get("first_index", 2),
             oov=it.get("oov_index", 1))
    if c["arch"] == "gpt2":
        c.update(heads=m["n_heads"], d_ff=m["d_ff"], act=m.get("activation", "gelu_tanh"),
                 eps=m.get("layer_norm_eps", 1e-5))
    prefix = m.get("tensor_prefix", "")
    raw = read_safetensors(os.path.join(bdir, m.get("weights", "model.safetensors")))
    W = {n[len(prefix):]: t for n, t in raw.items() if n.startswith(prefix)}
    E = W["wte.weight"] if c["arch"] == "gpt2" else W["item_embedding.weight"]
    c["V"] = E.shape[0]
    ids = [None] * c["V"]
    with open(os.path.join(bdir, it.get("vocab", "items.tsv"))) as f:
        cols = f.readline().rstrip("\n").split("\t")
        ci, cid = cols.index("index"), cols.index("item_id")
        for line in f:
            row = line.rstrip("\n").split("\t")
            ids[int(row[ci])] = row[cid]
    return c, W, ids


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


# ---- gpt2 reference (float64) ------------------------------------------------------------


def act_fn(name):
    if name == "gelu_tanh":  # HF gelu_new
        return lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    if name == "gelu":
        return lambda x: 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    if name == "relu":
        return torch.relu
    raise ValueError(name)


def layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * g + b


def gpt2_explicit(c, W, idx):
    """HF GPT2Model semantics, one session (list of indices, already cut to max_len)."""
    d, nh, eps = c["d"], c["heads"], c.get("eps", 1e-5)
    dh = d // nh
    act = act_fn(c["act"])
    L = len(idx)
    x = W["wte.weight"][idx] + W["wpe.weight"][:L]
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    for i in range(c["layers"]):
        p = "h.%d." % i
        h = layer_norm(x, W[p + "ln_1.weight"], W[p + "ln_1.bias"], eps)
        qkv = h @ W[p + "attn.c_attn.weight"] + W[p + "attn.c_attn.bias"]
        q, k, v = qkv.split(d, dim=-1)
        q = q.view(L, nh, dh).transpose(0, 1)
        k = k.view(L, nh, dh).transpose(0, 1)
        v = v.view(L, nh, dh).transpose(0, 1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
        att = att.masked_fill(~causal, float("-inf")).softmax(-1)
        a = (att @ v).transpose(0, 1).reshape(L, d)
        x = x + a @ W[p + "attn.c_proj.weight"] + W[p + "attn.c_proj.bias"]
        h = layer_norm(x, W[p + "ln_2.weight"], W[p + "ln_2.bias"], eps)
        m = act(h @ W[p + "mlp.c_fc.weight"] + W[p + "mlp.c_fc.bias"])
        x = x + m @ W[p + "mlp.c_proj.weight"] + W[p + "mlp.c_proj.bias"]
    x = layer_norm(x, W["ln_f.weight"], W["ln_f.bias"], eps)
    return x[L - 1]


def gpt2_torch_layers(c, W):
    """The same blocks as PyTorch's nn.TransformerEncoderLayer (pre-norm), float64."""
    d, eps = c["d"], c.get("eps", 1e-5)
    act = {"gelu": "gelu", "relu": "relu"}.get(c["act"]) or (lambda x: F.gelu(x, approximate="tanh"))
    layers = []
    for i in range(c["layers"]):
        p = "h.%d." % i
        m = nn.TransformerEncoderLayer(d, c["heads"], dim_feedforward=c["d_ff"], dropout=0.0,
                                       activation=act, layer_norm_eps=eps, batch_first=True,
                                       norm_first=True).double()
        with torch.no_grad():
            m.self_attn.in_proj_weight.copy_(W[p + "attn.c_attn.weight"].T)
            m.self_attn.in_proj_bias.copy_(W[p + "attn.c_attn.bias"])
            m.self_attn.out_proj.weight.copy_(W[p + "attn.c_proj.weight"].T)
            m.self_attn.out_proj.bias.copy_(W[p + "attn.c_proj.bias"])
            m.linear1.weight.copy_(W[p + "mlp.c_fc.weight"].T)
            m.linear1.bias.copy_(W[p + "mlp.c_fc.bias"])
            m.linear2.weight.copy_(W[p + "mlp.c_proj.weight"].T)
            m.linear2.bias.copy_(W[p + "mlp.c_proj.bias"])
            m.norm1.weight.copy_(W[p + "ln_1.weight"])
            m.norm1.bias.copy_(W[p + "ln_1.bias"])
            m.norm2.weight.copy_(W[p + "ln_2.weight"])
            m.norm2.bias.copy_(W[p + "ln_2.bias"])
        m.train()  # dropout is 0; train() keeps the reference path (no fused fast path)
        layers.append(m)
    return layers


def gpt2_torch(c, W, layers, idx):
    L = len(idx)
    x = (W["wte.weight"][idx] + W["wpe.weight"][:L]).unsqueeze(0)
    mask = torch.triu(torch.full((L, L), float("-inf"), dtype=torch.float64), diagonal=1)
    for m in layers:
        x = m(x, src_mask=mask)
    x = F.layer_norm(x, (c["d"],), W["ln_f.weight"], W["ln_f.bias"], c.get("eps", 1e-5))
    return x[0, L - 1]


# ---- gru4rec reference (float64) ---------------------------------------------------------


def gru_torch(c, W):
    H = c["d"]
    g = nn.GRU(H, H, num_layers=c["layers"], batch_first=True, bias=True).double()
    with torch.no_grad():
        for k in range(c["layers"]):
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(g, "%s_l%d" % (n, k)).copy_(W["gru.%s_l%d" % (n, k)])
    return g


def gru_explicit(c, W, idx):
    H = c["d"]
    x = W["item_embedding.weight"][idx]
    for k in range(c["layers"]):
        Wih, Whh = W["gru.weight_ih_l%d" % k], W["gru.weight_hh_l%d" % k]
        bih, bhh = W["gru.bias_ih_l%d" % k], W["gru.bias_hh_l%d" % k]
        h = torch.zeros(H, dtype=torch.float64)
        outs = []
        for t in range(x.shape[0]):
            gi = Wih @ x[t] + bih
            gh = Whh @ h + bhh
            r = torch.sigmoid(gi[:H] + gh[:H])
            z = torch.sigmoid(gi[H:2 * H] + gh[H:2 * H])
            n = torch.tanh(gi[2 * H:] + r * gh[2 * H:])
            h = (1 - z) * n + z * h
            outs.append(h)
        x = torch.stack(outs)
    return x[-1]


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
