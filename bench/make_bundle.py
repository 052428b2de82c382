#!/usr/bin/env python3
"""make_bundle.py — writes a random gpt2 model bundle (DESIGN §3) of any catalogue size to a
directory, for benchmarks only (bench/replay_bench.sh): `sr_bundle_synthetic` builds one in
memory, but `streamrec replay` reads bundles from disk. Stdlib only; deterministic by seed.

  make_bundle.py OUTDIR [--items 100000] [--d 64] [--layers 2] [--heads 2] [--d-ff 256]
                 [--max-len 50] [--seed 1]

Item ids are "i<index>"; V = items + 2 (index 0 padding, 1 unknown).
"""
import argparse
import array
import json
import os
import random
import struct


def tensor(rng, n, scale, const=None):
    a = array.array("f", [const] * n) if const is not None else \
        array.array("f", (rng.uniform(-scale, scale) for _ in range(n)))
    return a


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir")
    ap.add_argument("--items", type=int, default=100000)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--d-ff", type=int, default=256)
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    d, ff, V = a.d, a.d_ff, a.items + 2
    s = (3.0 / d) ** 0.5  # uniform with variance 1/d
    ts = [("wte.weight", [V, d], tensor(rng, V * d, s)), ("wpe.weight", [a.max_len, d], tensor(rng, a.max_len * d, s))]
    for i in range(a.layers):
        p = "h.%d." % i
        ts += [(p + "ln_1.weight", [d], tensor(rng, d, 0, 1.0)), (p + "ln_1.bias", [d], tensor(rng, d, 0, 0.0)),
               (p + "attn.c_attn.weight", [d, 3 * d], tensor(rng, 3 * d * d, s)),
               (p + "attn.c_attn.bias", [3 * d], tensor(rng, 3 * d, 0.02)),
               (p + "attn.c_proj.weight", [d, d], tensor(rng, d * d, s)),
               (p + "attn.c_proj.bias", [d], tensor(rng, d, 0.02)),
               (p + "ln_2.weight", [d], tensor(rng, d, 0, 1.0)), (p + "ln_2.bias", [d], tensor(rng, d, 0, 0.0)),
               (p + "mlp.c_fc.weight", [d, ff], tensor(rng, d * ff, s)),
               (p + "mlp.c_fc.bias", [ff], tensor(rng, ff, 0.02)),
               (p + "mlp.c_proj.weight", [ff, d], tensor(rng, ff * d, (3.0 / ff) ** 0.5)),
               (p + "mlp.c_proj.bias", [d], tensor(rng, d, 0.02))]
    ts += [("ln_f.weight", [d], tensor(rng, d, 0, 1.0)), ("ln_f.bias", [d], tensor(rng, d, 0, 0.0))]
    header, off = {}, 0
    for name, shape, data in ts:
        n = len(data) * 4
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    os.makedirs(a.outdir, exist_ok=True)
    with open(os.path.join(a.outdir, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for _, _, data in ts:
            f.write(data.tobytes())  # little-endian hosts only (x86, arm64)
    with open(os.path.join(a.outdir, "items.tsv"), "w") as f:
        f.write("index\titem_id\n")
        for j in range(2, V):
            f.write("%d\ti%d\n" % (j, j))
    bundle = {"format": "streamrec-bundle/1", "version": "bench-gpt2-%dk-d%d" % (a.items // 1000, d),
              "model": {"arch": "gpt2", "weights": "model.safetensors", "tensor_prefix": "",
                        "d_model": d, "n_layers": a.layers, "n_heads": a.heads, "d_ff": ff,
                        "max_len": a.max_len, "activation": "gelu_tanh", "layer_norm_eps": 1e-5},
              "items": {"vocab": "items.tsv", "first_index": 2, "oov_index": 1}}
    with open(os.path.join(a.outdir, "bundle.json"), "w") as f:
        json.dump(bundle, f, indent=2)


if __name__ == "__main__":
    main()
