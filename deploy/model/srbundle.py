"""srbundle.py — the streamrec model bundle (DESIGN §3) from Python: safetensors read/write
(by hand: the format is a length, a JSON header and raw little-endian data), bundle.json and
items.tsv writing and reading, and float64 reference implementations of the two architectures
exactly as the bundle contract defines them (Hugging Face GPT2Model arithmetic with Conv1D
layout; PyTorch nn.GRU with gate order r, z, n and h0 = 0), plus top-k scoring with ties to the
lower index. Shared by export.py, train.py and tests/gen/make_reference.py.

Needs torch and numpy (Debian: python3-torch, python3-numpy; run with /usr/bin/python3).
"""
import json
import math
import os
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

FORMAT = "streamrec-bundle/1"

# ---- safetensors ---------------------------------------------------------------------------


def round_to(dtype, a):
    """Rounds array a to dtype ("F32", "F16", "BF16"); returns (float64 widened values, raw LE
    bytes). BF16 rounds to nearest even through torch."""
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
    raise ValueError("unknown dtype %r (F32, F16 or BF16)" % (dtype,))


def write_safetensors(path, tensors, generator="streamrec srbundle.py"):
    """tensors: list of (name, dtype, shape, raw bytes), written in that order."""
    header, off = {}, 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    header["__metadata__"] = {"format": "pt", "generator": generator}
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for _, _, _, raw in tensors:
            f.write(raw)


def read_safetensors(path):
    """Reads a safetensors file: name -> float64 torch tensor (F32/F16/BF16 widened)."""
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
            raise ValueError("%s: %s: dtype %s not supported" % (path, name, t["dtype"]))
        out[name] = torch.from_numpy(a.reshape(t["shape"]).copy())
    return out


# ---- bundle directory ----------------------------------------------------------------------


def write_bundle_json(bdir, model, items, version):
    """model: dict of bundle.json's "model" fields; items: dict of its "items" fields."""
    bj = {"format": FORMAT, "version": version, "model": model, "items": items}
    with open(os.path.join(bdir, "bundle.json"), "w") as f:
        json.dump(bj, f, indent=2)
        f.write("\n")


def write_items_tsv(path, ids, first_index, attrs=None):
    """ids[j] is the item id at index j (entries below first_index are ignored); attrs is an
    optional (column names, {item_id: [values]}) pair written as extra columns ('' if absent)."""
    cols = ["index", "item_id"] + (list(attrs[0]) if attrs else [])
    with open(path, "w") as f:
        f.write("\t".join(cols) + "\n")
        for j in range(first_index, len(ids)):
            row = [str(j), ids[j]]
            if attrs:
                row += [str(v) for v in attrs[1].get(ids[j], [""] * len(attrs[0]))]
            f.write("\t".join(row) + "\n")


def load_bundle(bdir):
    """Reads a bundle directory into (config dict, weights without prefix, ids by index).
    Config keys: name arch d layers max_len first oov V [heads d_ff act eps]."""
    with open(os.path.join(bdir, "bundle.json")) as f:
        bj = json.load(f)
    m, it = bj["model"], bj.get("items", {})
    c = dict(name=os.path.basename(os.path.normpath(bdir)), arch=m["arch"], d=m["d_model"],
             layers=m["n_layers"], max_len=m["max_len"], first=it.get("first_index", 2),
             oov=it.get("oov_index", 1), version=bj.get("version"))
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


# ---- gpt2 (float64, HF GPT2Model semantics) ------------------------------------------------


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
    """The same blocks as PyTorch's nn.TransformerEncoderLayer (pre-norm), float64: an
    independent implementation to cross-check gpt2_explicit against."""
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


# ---- gru4rec (float64) ---------------------------------------------------------------------


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


# ---- scoring -------------------------------------------------------------------------------


class Reference:
    """A bundle read back from disk, scored in float64 two independent ways (explicit math and
    PyTorch modules) that must agree; session_vector() returns the explicit one and the gap."""

    def __init__(self, bdir):
        self.c, self.W, self.ids = load_bundle(bdir)
        self.index_of = {s: j for j, s in enumerate(self.ids) if s is not None}
        if self.c["arch"] == "gpt2":
            self.layers = gpt2_torch_layers(self.c, self.W)
        else:
            self.gru = gru_torch(self.c, self.W)

    def indices(self, items):
        return [self.index_of.get(s, self.c["oov"]) for s in items][-self.c["max_len"]:]

    def session_vector(self, idx):
        c, W = self.c, self.W
        with torch.no_grad():
            if c["arch"] == "gpt2":
                v = gpt2_explicit(c, W, idx)
                v2 = gpt2_torch(c, W, self.layers, idx)
            else:
                x = W["item_embedding.weight"][idx].unsqueeze(0)
                out, _ = self.gru(x, torch.zeros(c["layers"], 1, c["d"], dtype=torch.float64))
                v = out[0, -1]
                v2 = gru_explicit(c, W, idx)
        return v, float((v - v2).abs().max())

    def scores(self, vec):
        """Scores of indices first..V-1 (numpy float64, position j - first)."""
        first = self.c["first"]
        E = self.W["wte.weight"] if self.c["arch"] == "gpt2" else self.W["item_embedding.weight"]
        s = (E[first:] @ vec).numpy()
        if "output.bias" in self.W:
            s = s + self.W["output.bias"][first:].numpy()
        return s


def topk_of(scores, k, first):
    """(indices, scores) of the k best, score descending, ties to the lower index; also the
    (k+1)-th score (or -inf)."""
    order = np.argsort(-scores, kind="stable")
    top = order[:k + 1]
    nxt = float(scores[top[k]]) if len(top) > k else float("-inf")
    return [int(j) + first for j in top[:k]], [float(scores[j]) for j in top[:k]], nxt
