#!/usr/bin/python3
"""export.py — turns a PyTorch session model into a streamrec bundle (DESIGN §3) and proves that
streamrec computes what PyTorch computes.

  /usr/bin/python3 deploy/model/export.py CHECKPOINT --items MAPPING --out BUNDLE_DIR [options]

CHECKPOINT: a torch.save'd state_dict, a dict holding one (under state_dict, model_state_dict,
model or module), a whole nn.Module, or a .safetensors file, of
  gpt2     a Hugging Face GPT2Model (wte.weight, wpe.weight, h.N.ln_1..., Conv1D layout) under
           any prefix (transformer., model.transformer., a Transformers4Rec body...);
  gru4rec  an nn.GRU session model: an item embedding [V,H] plus gru.weight_ih_l0... under any
           prefix (rnn., gru4rec.gru., ...); the embedding is found by shape or named by
           --item-embedding.
--map OLD=NEW renames tensors (exact name or prefix) before detection, for anything else.
Weight tying is the contract: scores are session_vector . E[j] (+ output bias). The tensors are
written without prefix, F32 (or --dtype f16/bf16).

MAPPING: item id -> embedding row index:
  .tsv/.csv  a header with item_id and index columns (more columns become item attributes);
             without an index column, rows are numbered from --first-index;
  .json      {"item_id": index, ...} or a list whose position is the index (null = reserved);
  .parquet   NVTabular's unique.<col>.parquet: row r is index r + --parquet-offset (needs
             pyarrow or pandas; the script says so when neither is installed).
--attributes FILE adds item attribute columns (TSV/CSV with item_id) to items.tsv.
--nvtabular sets NVTabular's layout (first_index 3, oov_index 2).

Verification (on unless --no-verify): the bundle is read back from disk, --verify-sessions
sessions (from --sessions FILE of {"items": [...]} lines, else random) are scored in float64
PyTorch and by `streamrec score`, and any difference in the top-k or a score beyond tolerance
fails the export (exit 1). streamrec is found via --streamrec, PATH, or ./build/stream/streamrec.
"""
import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import srbundle  # noqa: E402


class ExportError(Exception):
    pass


# ---- checkpoint ----------------------------------------------------------------------------


def load_state_dict(path):
    """Returns an ordered {name: float64 tensor} from a checkpoint file (see module doc)."""
    if path.endswith(".safetensors"):
        return dict(srbundle.read_safetensors(path))
    try:
        obj = torch.load(path, map_location="cpu")
    except Exception as e:  # torch raises many types; name the file
        raise ExportError("%s: cannot load with torch.load: %s" % (path, e))
    return state_dict_of(obj, path)


def state_dict_of(obj, what="checkpoint"):
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict) and not all(torch.is_tensor(v) for v in obj.values()):
        for key in ("state_dict", "model_state_dict", "model", "module", "net"):
            if key in obj and (isinstance(obj[key], dict) or isinstance(obj[key], torch.nn.Module)):
                return state_dict_of(obj[key], what)
        raise ExportError("%s: a dict without tensors or a state_dict/model_state_dict/model key "
                          "(keys: %s)" % (what, ", ".join(list(map(str, obj))[:8])))
    if not isinstance(obj, dict):
        raise ExportError("%s: expected a state_dict or nn.Module, got %s" % (what, type(obj).__name__))
    out = {}
    for k, v in obj.items():
        if torch.is_tensor(v) and v.is_floating_point():
            out[k] = v.detach().to(torch.float64).cpu()
    return out


def apply_maps(sd, maps):
    """maps: list of "OLD=NEW"; OLD matches a whole name or a prefix of it."""
    for m in maps:
        if "=" not in m:
            raise ExportError("--map %r: expected OLD=NEW" % m)
        old, new = m.split("=", 1)
        sd = {(new + k[len(old):] if k.startswith(old) else k): v for k, v in sd.items()}
    return sd


def _only(cands, what):
    if len(cands) > 1:
        raise ExportError("%s: several candidates (%s); choose with --map or --item-embedding"
                          % (what, ", ".join(sorted(cands))))
    return cands[0] if cands else None


def to_bundle_tensors(sd, arch=None, item_embedding=None, output_bias=None):
    """Finds the model inside a state_dict and renames it to bundle names (no prefix).
    Returns (arch, {bundle name: tensor}, notes)."""
    notes, src = [], {}
    gpt = [k[:-len("h.0.ln_1.weight")] for k in sd if k.endswith("h.0.ln_1.weight")]
    gru = [k[:-len("weight_ih_l0")] for k in sd if k.endswith("weight_ih_l0")]
    if arch is None:
        if gpt and not gru:
            arch = "gpt2"
        elif gru and not gpt:
            arch = "gru4rec"
        else:
            raise ExportError("cannot tell the architecture: found %s; give --arch"
                              % ("both a GPT-2 block and a GRU" if gpt else
                                 "neither h.0.ln_1.weight (GPT-2) nor weight_ih_l0 (GRU)"))
    W = {}
    if arch == "gpt2":
        p = _only(gpt, "GPT-2 blocks (h.0.ln_1.weight)")
        if p is None:
            raise ExportError("no GPT-2 block: no tensor named ...h.0.ln_1.weight")
        if p:
            notes.append("GPT-2 tensors found under prefix %r (written without it)" % p)
        for k, v in sd.items():
            if k.startswith(p):
                rest = k[len(p):]
                if re.match(r"^(wte|wpe|ln_f)\.(weight|bias)$|^h\.\d+\.", rest) and not rest.endswith(".attn.bias") \
                        and not rest.endswith(".attn.masked_bias"):
                    W[rest] = v
                    src[rest] = k
        emb_key = item_embedding
        if emb_key is None and p + "wte.weight" not in sd:
            # Transformers4Rec feeds inputs_embeds from its own item table: look for it.
            emb_key = _only([k for k in sd if "embedding_tables" in k and "item" in k and sd[k].dim() == 2],
                            "item embedding table (Transformers4Rec embedding_tables)")
        if emb_key is not None:
            if emb_key not in sd:
                raise ExportError("--item-embedding %s: no such tensor" % emb_key)
            W["wte.weight"] = sd[emb_key]
            src["wte.weight"] = emb_key
            notes.append("item embedding (wte.weight) taken from %s" % emb_key)
        if "wte.weight" not in W:
            raise ExportError("no item embedding: neither %swte.weight nor --item-embedding" % p)
    else:
        p = _only(gru, "GRUs (weight_ih_l0)")
        if p:
            notes.append("GRU tensors found under prefix %r (written as gru.)" % p)
        for k, v in sd.items():
            m = re.match(r"^" + re.escape(p) + r"((weight|bias)_(ih|hh)_l\d+)$", k)
            if m:
                W["gru." + m.group(1)] = v
                src["gru." + m.group(1)] = k
        H = W["gru.weight_hh_l0"].shape[1]
        emb_key = item_embedding
        if emb_key is None:
            if "item_embedding.weight" in sd:
                emb_key = "item_embedding.weight"
            else:
                emb_key = _only([k for k in sd if k.endswith(".weight") and sd[k].dim() == 2
                                 and sd[k].shape[1] == H and "emb" in k.lower()
                                 and not k.startswith(p)], "item embedding [V,%d]" % H)
        if emb_key is None or emb_key not in sd:
            raise ExportError("no item embedding [V,%d] found; name it with --item-embedding" % H)
        if emb_key != "item_embedding.weight":
            notes.append("item embedding taken from %s" % emb_key)
        W["item_embedding.weight"] = sd[emb_key]
        src["item_embedding.weight"] = emb_key
    table = W.get("wte.weight") if arch == "gpt2" else W["item_embedding.weight"]
    V = table.shape[0]
    # The bundle scores with the item table (DESIGN §3): a separate output head ([V, d], e.g.
    # lm_head.weight) that differs from it would be served as a different model. Refuse it
    # rather than export (and verify against) something other than what was trained.
    heads = [k for k in sd if k.endswith(("lm_head.weight", "output.weight", "output_layer.weight",
                                          "head.weight", "decoder.weight"))
             and k != src.get("wte.weight", src.get("item_embedding.weight"))
             and hasattr(sd[k], "dim") and sd[k].dim() == 2 and tuple(sd[k].shape) == tuple(table.shape)]
    for k in heads:
        if not torch.equal(sd[k].float(), table.float()):
            raise ExportError("%s is an output head not tied to the item table %s: the bundle scores "
                              "with the item table, so this model cannot be served as trained (tie the "
                              "head to the embedding, or train with tied weights)"
                              % (k, src.get("wte.weight", src.get("item_embedding.weight"))))
        src[k] = k  # tied: the same tensor, nothing more to export
        notes.append("output head %s is tied to the item table" % k)
    ob = output_bias
    if ob is None:
        ob = _only([k for k in sd if (k.endswith("output.bias") or k.endswith("output_layer_bias"))
                    and sd[k].numel() == V], "output bias [V]")
    if ob is not None:
        if ob not in sd:
            raise ExportError("--output-bias %s: no such tensor" % ob)
        W["output.bias"] = sd[ob].reshape(-1)
        src["output.bias"] = ob
        if ob != "output.bias":
            notes.append("output bias taken from %s" % ob)
    used = set(src.values())
    unused = [k for k in sd if k not in used and not k.endswith(("attn.bias", "attn.masked_bias"))]
    if unused:
        notes.append("warning: %d tensors are not part of the bundle (streamrec will not compute them; "
                     "check they are not needed): %s%s" % (len(unused), ", ".join(unused[:6]),
                                                           ", ..." if len(unused) > 6 else ""))
    return arch, W, notes


def infer_model(arch, W, n_heads=None, activation=None, eps=None, hf_config=None):
    """bundle.json "model" fields from tensor shapes plus what shapes cannot tell."""
    cfg = {}
    if hf_config:
        with open(hf_config) as f:
            cfg = json.load(f)
    if arch == "gpt2":
        V, d = W["wte.weight"].shape
        n_layers = 1 + max(int(k.split(".")[1]) for k in W if k.startswith("h."))
        heads = n_heads or cfg.get("n_head")
        if not heads:
            raise ExportError("GPT-2 needs --n-heads (tensor shapes do not tell the head count) "
                              "or --hf-config config.json")
        if d % heads:
            raise ExportError("d_model %d is not a multiple of --n-heads %d" % (d, heads))
        act = activation or {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu",
                             "relu": "relu"}.get(cfg.get("activation_function", "gelu_new"))
        if act is None:
            raise ExportError("activation_function %r is not supported (gelu_new, gelu, relu)"
                              % cfg.get("activation_function"))
        m = {"arch": "gpt2", "weights": "model.safetensors", "tensor_prefix": "", "d_model": int(d),
             "n_layers": n_layers, "n_heads": int(heads), "d_ff": int(W["h.0.mlp.c_fc.weight"].shape[1]),
             "max_len": int(W["wpe.weight"].shape[0]), "activation": act,
             "layer_norm_eps": float(eps or cfg.get("layer_norm_epsilon", 1e-5))}
    else:
        V, H = W["item_embedding.weight"].shape
        n_layers = 1 + max(int(k.rsplit("_l", 1)[1]) for k in W if k.startswith("gru."))
        if W["gru.weight_ih_l0"].shape[1] != H:
            raise ExportError("GRU input size %d differs from the item embedding width %d: the "
                              "bundle contract needs input = hidden = embedding width"
                              % (W["gru.weight_ih_l0"].shape[1], H))
        if W["gru.weight_hh_l0"].shape[1] != H:
            raise ExportError("GRU hidden size %d differs from the item embedding width %d (weight "
                              "tying needs them equal)" % (W["gru.weight_hh_l0"].shape[1], H))
        m = {"arch": "gru4rec", "weights": "model.safetensors", "tensor_prefix": "", "d_model": int(H),
             "n_layers": n_layers, "max_len": None}
    return m, int(V)


# ---- item mapping --------------------------------------------------------------------------


def _read_table(path):
    with open(path, newline="") as f:
        text = f.read()
    delim = "\t" if (path.endswith(".tsv") or "\t" in text.split("\n", 1)[0]) else ","
    rows = list(csv.reader(text.splitlines(), delimiter=delim))
    if not rows:
        raise ExportError("%s: empty" % path)
    return [h.strip() for h in rows[0]], rows[1:]


def load_mapping(path, first_index, parquet_offset=0):
    """Returns ({index: item_id}, attribute columns, {item_id: [values]})."""
    by_index, attr_cols, attrs = {}, [], {}
    if path.endswith(".parquet") or os.path.isdir(path):
        ids = _read_parquet_ids(path)
        for r, s in enumerate(ids):
            if s is None:
                continue
            by_index[r + parquet_offset] = str(s)
    elif path.endswith(".json"):
        with open(path) as f:
            obj = json.load(f)
        if isinstance(obj, dict):
            for s, j in obj.items():
                by_index[int(j)] = str(s)
        elif isinstance(obj, list):
            for j, s in enumerate(obj):
                if s is not None:
                    by_index[j] = str(s)
        else:
            raise ExportError("%s: expected an object {id: index} or a list" % path)
    else:
        cols, rows = _read_table(path)
        if "item_id" not in cols:
            raise ExportError("%s: header has no item_id column (%s)" % (path, ", ".join(cols)))
        ci = cols.index("item_id")
        ii = cols.index("index") if "index" in cols else None
        attr_cols = [c for i, c in enumerate(cols) if i not in (ci, ii)]
        for n, row in enumerate(rows):
            if not row:
                continue
            j = int(row[ii]) if ii is not None else first_index + n
            by_index[j] = row[ci]
            attrs[row[ci]] = [v for i, v in enumerate(row) if i not in (ci, ii)]
    return by_index, attr_cols, attrs


def _read_parquet_ids(path):
    try:
        import pyarrow.parquet as pq
        t = pq.read_table(path)
        col = [c for c in t.column_names if not c.endswith("_size")][0]
        return t.column(col).to_pylist()
    except ImportError:
        pass
    try:
        import pandas as pd
        df = pd.read_parquet(path)
        col = [c for c in df.columns if not str(c).endswith("_size")][0]
        return [None if (v is None or (isinstance(v, float) and np.isnan(v))) else v for v in df[col]]
    except ImportError:
        raise ExportError("%s: reading parquet needs pyarrow or pandas, and neither is installed "
                          "(Debian: apt-get install python3-pandas python3-pyarrow, where packaged); "
                          "or convert the vocabulary to TSV with columns index, item_id" % path)


def load_attributes(path):
    cols, rows = _read_table(path)
    if "item_id" not in cols:
        raise ExportError("%s: header has no item_id column" % path)
    ci = cols.index("item_id")
    names = [c for i, c in enumerate(cols) if i != ci and c != "index"]
    keep = [i for i, c in enumerate(cols) if i != ci and c != "index"]
    return names, {r[ci]: [r[i] for i in keep] for r in rows if r}


def vocab_ids(by_index, V, first_index, fill_missing=False):
    ids = [None] * V
    seen = {}
    for j, s in by_index.items():
        if j < first_index:
            continue
        if j >= V:
            raise ExportError("item %r has index %d, but the item embedding has only %d rows" % (s, j, V))
        if s in seen:
            raise ExportError("item id %r appears at indices %d and %d" % (s, seen[s], j))
        if any(c in s for c in "\t\n\r"):
            raise ExportError("item id %r contains a tab or newline" % s)
        seen[s] = j
        ids[j] = s
    missing = [j for j in range(first_index, V) if ids[j] is None]
    if missing:
        if not fill_missing:
            raise ExportError("%d embedding rows from first_index %d to %d have no item id (first: %d); "
                              "pass --fill-missing to give them placeholder ids (marked available=0)"
                              % (len(missing), first_index, V - 1, missing[0]))
        for j in missing:
            ids[j] = "__unmapped_%d" % j
    return ids, missing


# ---- writing -------------------------------------------------------------------------------


def write_bundle(out, arch, W, model, ids, first_index, oov_index, version, dtype="F32",
                 attrs=None, unmapped=()):
    """Writes bundle.json, model.safetensors and items.tsv into directory out (created)."""
    os.makedirs(out, exist_ok=True)
    order = (["wte.weight", "wpe.weight"] if arch == "gpt2" else ["item_embedding.weight"])
    order += sorted((k for k in W if k.startswith("h.")), key=lambda k: (int(k.split(".")[1]), k))
    order += sorted(k for k in W if k.startswith("gru."))
    order += [k for k in ("ln_f.weight", "ln_f.bias", "output.bias") if k in W]
    tensors = []
    for k in order:
        a = W[k].detach().to(torch.float64).numpy()
        if not np.isfinite(a).all():
            raise ExportError("tensor %s has non-finite values" % k)
        _, raw = srbundle.round_to(dtype, a)
        tensors.append((k, dtype, a.shape, raw))
    srbundle.write_safetensors(os.path.join(out, "model.safetensors"), tensors,
                               generator="streamrec deploy/model/export.py")
    if unmapped:
        names = list(attrs[0]) if attrs else []
        vals = dict(attrs[1]) if attrs else {}
        if "available" not in names:
            names.append("available")
            vals = {s: v + ["1"] for s, v in vals.items()}
            for s in ids[first_index:]:
                vals.setdefault(s, [""] * (len(names) - 1) + ["1"])
        ai = names.index("available")
        for j in unmapped:
            row = [""] * len(names)
            row[ai] = "0"
            vals[ids[j]] = row
        attrs = (names, vals)
    srbundle.write_items_tsv(os.path.join(out, "items.tsv"), ids, first_index, attrs)
    srbundle.write_bundle_json(out, model, {"vocab": "items.tsv", "first_index": first_index,
                                            "oov_index": oov_index}, version)


# ---- verification --------------------------------------------------------------------------


def find_streamrec(explicit=None):
    for cand in (explicit, shutil.which("streamrec"),
                 os.path.join(os.getcwd(), "build", "stream", "streamrec"),
                 os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "stream",
                              "streamrec")):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return os.path.abspath(cand)
    raise ExportError("streamrec not found (give --streamrec PATH, put it on PATH, or build "
                      "./build/stream/streamrec); or pass --no-verify")


def random_sessions(ids, first, max_len, n, seed):
    rng = np.random.default_rng(seed)
    V = len(ids)
    out = []
    for s in range(n):
        L = [1, max_len, max_len + 3][s] if s < 3 else int(rng.integers(1, 2 * max_len + 1))
        out.append([ids[int(rng.integers(first, V))] if rng.random() > 0.03 else "unknown-%d" % s
                    for _ in range(L)])
    return out


def verify(bdir, streamrec, sessions, k=10, tol=1e-4, log=print):
    """Scores sessions with float64 PyTorch (bundle read back from disk) and `streamrec score`;
    raises ExportError on the first real difference. Returns the worst normalised error."""
    ck = subprocess.run([streamrec, "bundle", "check", bdir], capture_output=True, text=True)
    if ck.returncode != 0:
        raise ExportError("streamrec bundle check %s failed: %s" % (bdir, (ck.stderr or ck.stdout).strip()))
    ref = srbundle.Reference(bdir)
    c = ref.c
    k = min(k, c["V"] - c["first"])
    inp = "".join(json.dumps({"items": s}) + "\n" for s in sessions)
    r = subprocess.run([streamrec, "score", bdir, "-k", str(k), "--device", "cpu"], input=inp,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise ExportError("streamrec score failed: %s" % r.stderr.strip())
    got = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
    if len(got) != len(sessions):
        raise ExportError("streamrec score returned %d lines for %d sessions" % (len(got), len(sessions)))
    worst, worst_agree = 0.0, 0.0
    for n, (items, g) in enumerate(zip(sessions, got)):
        vec, agree = ref.session_vector(ref.indices(items))
        worst_agree = max(worst_agree, agree)
        if agree > 1e-8:
            raise ExportError("session %d: the two float64 references disagree by %g" % (n + 1, agree))
        s = ref.scores(vec)
        top, sc, nxt = srbundle.topk_of(s, k, c["first"])
        scale = max(1.0, abs(sc[0]))
        for pos, (gid, gs) in enumerate(zip(g["items"], g["scores"])):
            j = ref.index_of.get(gid)
            if j is None or j < c["first"]:
                raise ExportError("session %d: streamrec returned %r, not a recommendable item" % (n + 1, gid))
            exact = s[j - c["first"]]
            err = abs(gs - exact) / scale
            worst = max(worst, err)
            if err > tol:
                raise ExportError("session %d rank %d: %s scored %.7g by streamrec, %.7g by PyTorch "
                                  "(normalised error %.2e > %.0e)" % (n + 1, pos + 1, gid, gs, exact, err, tol))
            # a different item at this rank is fine only if PyTorch's scores tie within tol
            if j != top[pos] and abs(exact - sc[pos]) / scale > tol:
                raise ExportError("session %d rank %d: streamrec gives %s (%.7g), PyTorch %s (%.7g)"
                                  % (n + 1, pos + 1, gid, gs, ref.ids[top[pos]], sc[pos]))
        if len(g["items"]) != k:
            raise ExportError("session %d: %d items, expected %d" % (n + 1, len(g["items"]), k))
    log("verify: %d sessions, top-%d identical to float64 PyTorch; worst score error %.2e "
        "(normalised), references agree to %.1e" % (len(sessions), k, worst, worst_agree))
    return worst


# ---- command line --------------------------------------------------------------------------


def export(args, log=print):
    sd = load_state_dict(args.checkpoint)
    sd = apply_maps(sd, args.map or [])
    arch, W, notes = to_bundle_tensors(sd, args.arch, args.item_embedding, args.output_bias)
    for n in notes:
        log("export: " + n)
    if args.strict and any(n.startswith("warning:") for n in notes):
        raise ExportError("--strict: some checkpoint tensors would be left out (see the warning above)")
    model, V = infer_model(arch, W, args.n_heads, args.activation, args.layer_norm_eps, args.hf_config)
    if arch == "gru4rec":
        model["max_len"] = args.max_len or 50
    elif args.max_len:
        if args.max_len > model["max_len"]:
            raise ExportError("--max-len %d exceeds the position table (%d rows)" % (args.max_len, model["max_len"]))
        model["max_len"] = args.max_len
    first, oov = (3, 2) if args.nvtabular else (args.first_index, args.oov_index)
    if oov >= first:
        raise ExportError("oov index %d must be below first index %d" % (oov, first))
    if "output.bias" in W and W["output.bias"].shape[0] != V:
        raise ExportError("output bias has %d entries, the item table %d rows" % (W["output.bias"].shape[0], V))
    by_index, cols, avals = load_mapping(args.items, first, args.parquet_offset)
    ids, missing = vocab_ids(by_index, V, first, args.fill_missing)
    if missing:
        log("export: warning: %d rows without an item id got placeholders (available=0)" % len(missing))
    attrs = (cols, avals) if cols else None
    if args.attributes:
        attrs = load_attributes(args.attributes)
    version = args.version or os.path.basename(os.path.normpath(args.out))
    write_bundle(args.out, arch, W, model, ids, first, oov, version, args.dtype.upper(), attrs, missing)
    log("export: wrote %s (%s, V=%d, d=%d, %d layers, max_len %d, %s, first_index %d, oov_index %d)"
        % (args.out, arch, V, model["d_model"], model["n_layers"], model["max_len"], args.dtype.upper(), first, oov))
    if not args.no_verify:
        if args.sessions:
            with open(args.sessions) as f:
                sessions = [json.loads(l)["items"] for l in f if l.strip()][:args.verify_sessions]
        else:
            sessions = random_sessions(ids, first, model["max_len"], args.verify_sessions, args.seed)
        verify(args.out, find_streamrec(args.streamrec), sessions, log=log)


def add_args(ap):
    ap.add_argument("checkpoint", help="state_dict / checkpoint (.pt, .pth, .bin) or .safetensors")
    ap.add_argument("--items", required=True, help="item id -> index mapping (.tsv/.csv/.json/.parquet)")
    ap.add_argument("--out", required=True, help="bundle directory to write")
    ap.add_argument("--arch", choices=("gpt2", "gru4rec"), help="default: detected from tensor names")
    ap.add_argument("--map", action="append", metavar="OLD=NEW", help="rename tensors (name or prefix); repeatable")
    ap.add_argument("--item-embedding", metavar="NAME", help="tensor holding the item embedding [V,d]")
    ap.add_argument("--output-bias", metavar="NAME", help="tensor holding a per-item output bias [V]")
    ap.add_argument("--n-heads", type=int, help="GPT-2 attention heads (not visible in shapes)")
    ap.add_argument("--activation", choices=("gelu_tanh", "gelu", "relu"), help="GPT-2 MLP activation (default gelu_tanh)")
    ap.add_argument("--layer-norm-eps", type=float, help="GPT-2 layer norm epsilon (default 1e-5)")
    ap.add_argument("--hf-config", metavar="config.json", help="Hugging Face GPT2Config JSON (n_head, activation_function, layer_norm_epsilon)")
    ap.add_argument("--max-len", type=int, help="items per session (gru4rec: default 50; gpt2: default wpe rows)")
    ap.add_argument("--first-index", type=int, default=2, help="first vocabulary index (default 2)")
    ap.add_argument("--oov-index", type=int, default=1, help="index of unknown items (default 1)")
    ap.add_argument("--nvtabular", action="store_true", help="NVTabular Categorify layout: first_index 3, oov_index 2")
    ap.add_argument("--parquet-offset", type=int, default=0, help="index of the parquet's first row (default 0)")
    ap.add_argument("--attributes", metavar="FILE", help="TSV/CSV with item_id and attribute columns")
    ap.add_argument("--fill-missing", action="store_true", help="placeholder ids for unmapped rows")
    ap.add_argument("--strict", action="store_true", help="fail when checkpoint tensors would be left out")
    ap.add_argument("--dtype", default="f32", choices=("f32", "f16", "bf16"), help="stored weight type (default f32)")
    ap.add_argument("--version", help="bundle version string (default: the directory name)")
    ap.add_argument("--streamrec", metavar="PATH", help="streamrec executable for verification")
    ap.add_argument("--sessions", metavar="FILE", help='sessions to verify on ({"items": [...]} lines)')
    ap.add_argument("--verify-sessions", type=int, default=50, help="sessions to verify on (default 50)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the random verification sessions")
    ap.add_argument("--no-verify", action="store_true", help="skip the comparison with streamrec score")


def main():
    ap = argparse.ArgumentParser(description="Export a PyTorch GPT-2 or GRU session model to a streamrec bundle "
                                             "and verify streamrec against PyTorch.")
    add_args(ap)
    args = ap.parse_args()
    torch.set_num_threads(1)
    try:
        export(args)
    except ExportError as e:
        sys.exit("export: error: %s" % e)


if __name__ == "__main__":
    main()
