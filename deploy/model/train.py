#!/usr/bin/python3
"""train.py — trains a small next-item session model (GPT-2, causal, weight-tied output; or
GRU4Rec) on an event file on the CPU, exports it as a verified streamrec bundle, and evaluates
it on a held-out tail of sessions exactly as `streamrec replay --eval` does.

  /usr/bin/python3 deploy/model/train.py --events events.jsonl --out BUNDLE \
      [--arch gpt2|gru4rec] [--test test.jsonl | --holdout 0.1 --heldout-out heldout.jsonl]
      [--report train.json] [options]

Events: JSON Lines (DESIGN §4 fields) or an Avro object container file (needs the python3-avro
package; without it the script says so). Sessions are built as streamrec builds them: events in
file (stream) order; an event whose type is in --event-types appends its item; an event more
than --ttl-ms after its session's previous event starts the session afresh; the model sees the
last --max-len items.

Split: with --test FILE (e.g. `streamrec gen --from-csv --split-days N`'s test file) every
event of --events trains and FILE is evaluated; otherwise session ids ordered by their first
event's time, the last --holdout share of them (default 0.1) held out (all their events), the
rest training data.

Epochs: at most --epochs (default 100); the last --val-share (default 0.1) of the training
sessions by first event time is a validation slice, and training stops when its next-item loss
has not improved for --patience epochs (default 3), keeping the best epoch's weights. So small
data is trained to convergence instead of a fixed, too small number of epochs; --patience 0
trains exactly --epochs on all the training sessions. The batch (default 256 windows) shrinks on
small data so that an epoch is at least 20 steps. The vocabulary is the items appended in
training, most popular first, from index 2 (0 padding, 1 unknown), or the catalogue given by
--items (index and item_id columns, attributes carried into the bundle).

Evaluation (the definition of `replay --eval`, ops/op_eval.c): over the held-out events in
order, each event whose type is in --trigger-types yields a recommendation from the session as
it stands after that event (when it holds an item): the model's top-K over the vocabulary,
excluding the session's items (recs.exclude_seen=true; a list of event types excludes the
items the session had such an event for; --include-seen: none). Its target is the item of the same session id's next event
whose type is in --event-types; HitRate@K, MRR@K, NDCG@K over recommendations with a target.
The most-popular baseline (training counts, same exclusions) is evaluated the same way.
--heldout-out writes the held-out events so that `replay --eval` can be run on them.

Deterministic for a given seed and --threads (torch.manual_seed, deterministic algorithms).
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export  # noqa: E402
import srbundle  # noqa: E402

PAD, OOV, FIRST = 0, 1, 2

# ---- events --------------------------------------------------------------------------------


def read_events(path):
    """Returns a list of (session_id, item_id, event_type, timestamp_ms, raw JSON line) in file
    order; records missing a required field are skipped (replay counts them as invalid)."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"Obj\x01":
        return _read_avro(path)
    out, bad = [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                e = json.loads(line)
                ev = _event(e)
            except (ValueError, TypeError, KeyError):
                bad += 1
                continue
            out.append(ev + (line.rstrip("\n"),))
    if bad:
        print("train: skipped %d invalid events" % bad, file=sys.stderr)
    return out


def _event(e):
    s, i, t, ts = e["session_id"], e["item_id"], e["event_type"], e["timestamp_ms"]
    if not (isinstance(s, str) and isinstance(i, str) and isinstance(t, str)) or isinstance(ts, bool) \
            or not isinstance(ts, int):
        raise ValueError("bad field")
    return (s, i, t, ts)


def _read_avro(path):
    try:
        from avro.datafile import DataFileReader
        from avro.io import DatumReader
    except ImportError:
        sys.exit("train: %s is an Avro container file, and reading it needs the python3-avro package "
                 "(apt-get install python3-avro), which is not installed; or give JSON Lines" % path)
    import datetime
    out = []
    with open(path, "rb") as f:
        for rec in DataFileReader(f, DatumReader()):
            rec = dict(rec)
            ts = rec.get("timestamp_ms")
            if isinstance(ts, datetime.datetime):  # timestamp-millis read as a datetime
                rec["timestamp_ms"] = int(round(ts.timestamp() * 1000))
            try:
                ev = _event(rec)
            except (ValueError, TypeError, KeyError):
                continue
            out.append(ev + (json.dumps(rec),))
    return out


def split_by_session(events, holdout):
    """Session ids ordered by first event time (then file order); the last share is held out."""
    first = {}
    for n, (s, _, _, ts, _) in enumerate(events):
        if s not in first:
            first[s] = (ts, n)
    order = sorted(first, key=lambda s: first[s])
    n_hold = int(round(len(order) * holdout))
    held = set(order[len(order) - n_hold:]) if n_hold else set()
    return [e for e in events if e[0] not in held], [e for e in events if e[0] in held]


def build_sessions(events, append_types, ttl_ms):
    """Training sequences: per session id, items of append-type events in file order, split
    where the gap between consecutive events (of any type) exceeds ttl_ms."""
    cur, last, done = {}, {}, []
    for s, item, typ, ts, _ in events:
        if ttl_ms > 0 and s in last and ts - last[s] > ttl_ms and cur.get(s):
            done.append(cur.pop(s))
        last[s] = ts
        if typ in append_types:
            cur.setdefault(s, []).append(item)
    done.extend(v for v in cur.values() if v)
    return done


# ---- models --------------------------------------------------------------------------------


class Conv1D(nn.Module):
    """Hugging Face's Conv1D: weight [in, out], y = x @ W + b."""

    def __init__(self, nx, nf):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.02)
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        return x @ self.weight + self.bias


class Attn(nn.Module):
    def __init__(self, d, n_heads, dropout):
        super().__init__()
        self.c_attn, self.c_proj, self.nh, self.drop = Conv1D(d, 3 * d), Conv1D(d, d), n_heads, dropout

    def forward(self, x):
        B, L, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=-1)
        q, k, v = (t.view(B, L, self.nh, d // self.nh).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-1, -2)) / math.sqrt(d // self.nh)
        causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
        att = att.masked_fill(~causal, float("-inf")).softmax(-1)
        att = F.dropout(att, self.drop, self.training)
        return self.c_proj((att @ v).transpose(1, 2).reshape(B, L, d))


class MLP(nn.Module):
    def __init__(self, d, d_ff, act):
        super().__init__()
        self.c_fc, self.c_proj, self.act = Conv1D(d, d_ff), Conv1D(d_ff, d), act

    def forward(self, x):
        return self.c_proj(self.act(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, d, n_heads, d_ff, act, eps, dropout):
        super().__init__()
        self.ln_1, self.attn = nn.LayerNorm(d, eps=eps), Attn(d, n_heads, dropout)
        self.ln_2, self.mlp = nn.LayerNorm(d, eps=eps), MLP(d, d_ff, act)
        self.drop = dropout

    def forward(self, x):
        x = x + F.dropout(self.attn(self.ln_1(x)), self.drop, self.training)
        return x + F.dropout(self.mlp(self.ln_2(x)), self.drop, self.training)


ACTS = {"gelu_tanh": lambda x: F.gelu(x, approximate="tanh"), "gelu": F.gelu, "relu": F.relu}


class GPT2Rec(nn.Module):
    """GPT2Model with Hugging Face tensor names (wte, wpe, h.N.*, ln_f); the output layer is
    tied to wte, so state_dict() is a bundle as it stands."""

    def __init__(self, V, d, n_layers, n_heads, d_ff, max_len, act="gelu_tanh", eps=1e-5, dropout=0.1):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, d), nn.Embedding(max_len, d)
        nn.init.normal_(self.wte.weight, std=0.02)
        nn.init.normal_(self.wpe.weight, std=0.01)
        self.h = nn.ModuleList(Block(d, n_heads, d_ff, ACTS[act], eps, dropout) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d, eps=eps)
        self.drop = dropout
        self.cfg = dict(arch="gpt2", d=d, layers=n_layers, heads=n_heads, d_ff=d_ff, max_len=max_len,
                        act=act, eps=eps)

    def forward(self, idx):
        """idx [B, L] (right-padded) -> hidden states [B, L, d]."""
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = F.dropout(self.wte(idx) + self.wpe(pos), self.drop, self.training)
        for b in self.h:
            x = b(x)
        return self.ln_f(x)

    def item_table(self):
        return self.wte.weight


class GRU4Rec(nn.Module):
    """item_embedding + nn.GRU (batch_first); output tied to item_embedding."""

    def __init__(self, V, d, n_layers, max_len, dropout=0.1):
        super().__init__()
        self.item_embedding = nn.Embedding(V, d)
        nn.init.normal_(self.item_embedding.weight, std=0.05)
        self.gru = nn.GRU(d, d, num_layers=n_layers, batch_first=True)
        self.drop = dropout
        self.cfg = dict(arch="gru4rec", d=d, layers=n_layers, max_len=max_len)

    def forward(self, idx):
        out, _ = self.gru(F.dropout(self.item_embedding(idx), self.drop, self.training))
        return out

    def item_table(self):
        return self.item_embedding.weight


def make_model(args, V):
    if args.arch == "gpt2":
        return GPT2Rec(V, args.d_model, args.n_layers, args.n_heads, args.d_ff or 4 * args.d_model,
                       args.max_len, args.activation, 1e-5, args.dropout)
    return GRU4Rec(V, args.d_model, args.n_layers, args.max_len, args.dropout)


# ---- training ------------------------------------------------------------------------------


def windows(seqs, max_len):
    """(input, target) rows of length max_len: each session in windows of max_len + 1 items
    with stride max_len // 2, so that late positions are trained as serving sees them (the
    last max_len items at positions 0..max_len-1)."""
    rows = []
    stride = max(1, max_len // 2)
    for s in seqs:
        if len(s) < 2:
            continue
        start = 0
        while True:
            w = s[start:start + max_len + 1]
            rows.append(w)
            if start + max_len + 1 >= len(s):
                break
            start += stride
    X = np.zeros((len(rows), max_len), dtype=np.int64)
    Y = np.zeros((len(rows), max_len), dtype=np.int64)
    for n, w in enumerate(rows):
        X[n, :len(w) - 1] = w[:-1]
        Y[n, :len(w) - 1] = w[1:]
    return torch.from_numpy(X), torch.from_numpy(Y)


def val_loss(model, Xv, Yv, batch=512):
    """Mean next-item cross entropy over the validation windows (dropout off)."""
    model.eval()
    tot, cnt = 0.0, 0
    with torch.no_grad():
        for b in range(0, Xv.shape[0], batch):
            x, y = Xv[b:b + batch], Yv[b:b + batch]
            L = int((x != PAD).sum(1).max())
            x, y = x[:, :L], y[:, :L]
            mask = y != PAD
            logits = model(x)[mask] @ model.item_table().T
            logits[:, :FIRST] = float("-inf")
            tot += float(F.cross_entropy(logits, y[mask], reduction="sum"))
            cnt += int(mask.sum())
    return tot / max(cnt, 1)


def train(model, X, Y, args, log, val=None):
    """Trains up to args.epochs; with val = (Xv, Yv) and args.patience > 0, stops when the
    validation loss has not improved for args.patience epochs and restores the best epoch's
    weights. Returns (epochs run, best epoch, best validation loss or None)."""
    best, best_ep, best_state, since = float("inf"), 0, None, 0
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    n = X.shape[0]
    steps_per_epoch = max(1, (n + args.batch - 1) // args.batch)
    total = steps_per_epoch * args.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * max(0.05, 1 - s / max(1, total)))
    g = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    for ep in range(args.epochs):
        model.train()
        perm = torch.randperm(n, generator=g)
        tot, cnt = 0.0, 0
        for b in range(steps_per_epoch):
            ix = perm[b * args.batch:(b + 1) * args.batch]
            x, y = X[ix], Y[ix]
            L = int((x != PAD).sum(1).max())
            x, y = x[:, :L], y[:, :L]
            h = model(x)
            mask = y != PAD
            logits = h[mask] @ model.item_table().T
            logits[:, :FIRST] = float("-inf")
            loss = F.cross_entropy(logits, y[mask])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            tot += float(loss) * int(mask.sum())
            cnt += int(mask.sum())
        msg = "epoch %d/%d  loss %.4f" % (ep + 1, args.epochs, tot / max(cnt, 1))
        stop = False
        if val is not None:
            vl = val_loss(model, *val)
            msg += "  validation %.4f" % vl
            if vl < best - 1e-6:
                best, best_ep, since = vl, ep + 1, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                since += 1
                stop = since >= args.patience
        log(msg + "  (%.0f s)" % (time.time() - t0))
        if stop:
            log("early stop: validation loss not improved for %d epochs; best epoch %d" % (args.patience, best_ep))
            break
        if args.time_budget and time.time() - t0 > args.time_budget:
            log("time budget reached after epoch %d" % (ep + 1))
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return ep + 1, best_ep, (best if val is not None else None)


# ---- evaluation (replay --eval's definition) -----------------------------------------------


def replay_requests(events, index_of, append_types, trigger_types, ttl_ms, max_len, exclude=True):
    """Walks events as session_update + eval do. Returns (windows, targets, excluded):
    windows[r] is the session (indices, oldest first, at most max_len) of recommendation r;
    targets[r] its target index (or -1: none arrived; OOV targets never hit); excluded[r] the
    indices recs.exclude_seen removes: `exclude` True (all), False (none) or a set of event
    types (the items the session holds from events of those types)."""
    state, last_ts, pending = {}, {}, {}
    wins, targets, excl = [], [], []
    for s, item, typ, ts, _ in events:
        items = state.setdefault(s, [])  # (index, type), oldest first
        if ttl_ms > 0 and items and s in last_ts and ts - last_ts[s] > ttl_ms:
            items.clear()
        app = typ in append_types
        if app:
            if len(items) == max_len:
                items.pop(0)
            items.append((index_of.get(item, OOV), typ))
        last_ts[s] = ts
        if app and s in pending:
            targets[pending.pop(s)] = index_of.get(item, OOV)
        if typ in trigger_types and items:
            pending[s] = len(wins)
            wins.append([j for j, _ in items])
            excl.append([j for j, t in items if exclude is True or (exclude and t in exclude)])
            targets.append(-1)
    return wins, targets, excl


def rank_metrics(recs, targets, k):
    ev = hits = 0
    mrr = ndcg = 0.0
    for rec, t in zip(recs, targets):
        if t < 0:
            continue
        ev += 1
        for j, r in enumerate(rec[:k]):
            if r == t:
                hits += 1
                mrr += 1.0 / (j + 1)
                ndcg += 1.0 / math.log2(j + 2.0)
                break
    n = max(ev, 1)
    return {"k": k, "evaluated": ev, "hits": hits, "hit_rate": hits / n, "mrr": mrr / n, "ndcg": ndcg / n}


def topk_excluding(scores, excl_lists, k):
    """scores [R, V-FIRST] float64 numpy (column j = index j + FIRST); top-k indices per row,
    descending, ties to the lower index, the row's excluded items left out."""
    out = []
    for r in range(scores.shape[0]):
        s = scores[r].copy()
        for j in excl_lists[r]:
            if j >= FIRST:
                s[j - FIRST] = -np.inf
        part = np.argpartition(-s, min(k + 8, len(s) - 1))[:k + 8]
        order = sorted(part, key=lambda j: (-s[j], j))
        out.append([int(j) + FIRST for j in order[:k] if s[j] != -np.inf])
    return out


def model_recs(model, wins, k, excl, bias=None):
    """Top-k of the model in float64 (the weights as exported, F32) for each session window."""
    m = model.double().eval()
    E = m.item_table().detach()[FIRST:]
    recs = []
    with torch.no_grad():
        for b in range(0, len(wins), 512):
            chunk = wins[b:b + 512]
            L = max(len(w) for w in chunk)
            x = torch.zeros(len(chunk), L, dtype=torch.int64)
            for n, w in enumerate(chunk):
                x[n, :len(w)] = torch.tensor(w)
            h = m(x)
            last = torch.tensor([len(w) - 1 for w in chunk])
            v = h[torch.arange(len(chunk)), last]
            s = (v @ E.T).numpy()
            if bias is not None:
                s = s + bias[FIRST:]
            recs.extend(topk_excluding(s, excl[b:b + 512], k))
    model.float()
    return recs


def popular_recs(pop_order, excl, k):
    recs = []
    for e in excl:
        seen = set(e)
        out = []
        for j in pop_order:
            if j not in seen:
                out.append(j)
                if len(out) == k:
                    break
        recs.append(out)
    return recs


# ---- main ----------------------------------------------------------------------------------


def read_properties(path):
    props = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                props[k.strip()] = v.strip()
    return props


def main():
    ap = argparse.ArgumentParser(description="Train a GPT-2 or GRU4Rec next-item model on an event file, "
                                             "export a streamrec bundle, evaluate on held-out sessions.")
    ap.add_argument("--events", required=True, help="JSON Lines or Avro container event file")
    ap.add_argument("--out", required=True, help="bundle directory to write")
    ap.add_argument("--arch", default="gpt2", choices=("gpt2", "gru4rec"))
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--n-layers", type=int, default=2)
    ap.add_argument("--n-heads", type=int, default=2)
    ap.add_argument("--d-ff", type=int, default=0, help="default 4 * d-model")
    ap.add_argument("--activation", default="gelu_tanh", choices=("gelu_tanh", "gelu", "relu"))
    ap.add_argument("--max-len", type=int, default=20, help="items the model sees (session.max_len)")
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--epochs", type=int, default=100, help="at most this many epochs (early stopping ends sooner)")
    ap.add_argument("--patience", type=int, default=3, help="stop after this many epochs without a better "
                                                            "validation loss; 0: no validation slice, exactly --epochs")
    ap.add_argument("--val-share", type=float, default=0.1, help="share of training sessions (the latest by first "
                                                                 "event time) used as the validation slice")
    ap.add_argument("--batch", type=int, default=0, help="windows per step; default 0: 256, or fewer on small "
                                                          "data so that an epoch has at least 20 steps (>= 16)")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--time-budget", type=float, default=0, help="stop after the epoch that passes this many seconds")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (results depend on it; default 1)")
    ap.add_argument("--items", help="catalogue TSV (index, item_id[, attributes]), e.g. from `streamrec gen "
                                    "--items-out`: fixes the vocabulary and carries the attributes; default: "
                                    "the items seen in training, most popular first")
    ap.add_argument("--holdout", type=float, default=None, help="share of sessions held out (by first event time; "
                                                                "default 0.1); not with --test")
    ap.add_argument("--test", help="evaluate on this event file (e.g. gen --split-days' test file) instead of "
                                   "holding out part of --events")
    ap.add_argument("--config", help="streamrec properties file: session.event_types, recs.trigger_types, "
                                     "session.ttl.ms, recs.k, recs.exclude_seen are taken from it")
    ap.add_argument("--event-types", default="view,click,add_to_cart,purchase")
    ap.add_argument("--trigger-types", default="view,click,add_to_cart")
    ap.add_argument("--ttl-ms", type=int, default=1800000)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--include-seen", action="store_true", help="evaluate with recs.exclude_seen=false")
    ap.add_argument("--heldout-out", help="write the held-out events here (JSON Lines) for replay --eval")
    ap.add_argument("--report", help="write metrics as JSON")
    ap.add_argument("--version", help="bundle version (default: <arch>-<file>-seed<S>)")
    ap.add_argument("--dtype", default="f32", choices=("f32", "f16", "bf16"))
    ap.add_argument("--streamrec", help="streamrec executable for the export check")
    ap.add_argument("--no-verify", action="store_true", help="skip checking streamrec score against PyTorch")
    ap.add_argument("--verify-sessions", type=int, default=50)
    args = ap.parse_args()

    def log(msg):
        print("train: " + msg, flush=True)

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(args.threads)
    exclude_seen = not args.include_seen
    if args.test and args.holdout is not None:
        sys.exit("train: --test FILE and --holdout: give one (--test evaluates FILE and trains on all of --events)")
    if args.holdout is None:
        args.holdout = 0.1
    if args.config:
        p = read_properties(args.config)
        args.event_types = p.get("session.event_types", args.event_types)
        args.trigger_types = p.get("recs.trigger_types", args.trigger_types)
        args.ttl_ms = int(p.get("session.ttl.ms", args.ttl_ms))
        args.k = int(p.get("recs.k", args.k))
        ex = p.get("recs.exclude_seen", "true")
        if ex in ("true", "1", "yes", "on"):
            exclude_seen = True
        elif ex in ("false", "0", "no", "off"):
            exclude_seen = False
        else:  # event types (DESIGN §4.2)
            exclude_seen = set(t.strip() for t in ex.split(",") if t.strip())
        if args.include_seen:
            exclude_seen = False
        if "session.max_len" in p:
            args.max_len = int(p["session.max_len"])
    append_types = set(t.strip() for t in args.event_types.split(",") if t.strip())
    trigger_types = set(t.strip() for t in args.trigger_types.split(",") if t.strip())

    t0 = time.time()
    events = read_events(args.events)
    if not events:
        sys.exit("train: %s: no valid events" % args.events)
    if args.test:
        train_ev, held_ev = events, read_events(args.test)
        if not held_ev:
            sys.exit("train: --test %s: no valid events" % args.test)
    else:
        train_ev, held_ev = split_by_session(events, args.holdout)
    fit_ev, val_ev = (split_by_session(train_ev, args.val_share) if args.patience > 0 else (train_ev, []))
    seqs = build_sessions(train_ev, append_types, args.ttl_ms)
    counts = {}
    for s in seqs:
        for i in s:
            counts[i] = counts.get(i, 0) + 1
    vocab = sorted(counts, key=lambda i: (-counts[i], i))
    attrs = None
    if args.items:  # a fixed catalogue (e.g. `streamrec gen --items-out`): its ids and layout
        by_index, cols, avals = export.load_mapping(args.items, FIRST)
        try:
            ids, _ = export.vocab_ids(by_index, max(by_index) + 1, FIRST)
        except export.ExportError as e:
            sys.exit("train: --items %s: %s" % (args.items, e))
        attrs = (cols, avals) if cols else None
        index_of = {s: j for j, s in enumerate(ids) if s is not None}
        unknown = sum(1 for i in counts if i not in index_of)
        if unknown:
            log("%d training items are not in %s: they count as unknown" % (unknown, args.items))
        vocab = [i for i in vocab if i in index_of] + sorted((i for i in index_of if i not in counts),
                                                             key=lambda i: index_of[i])
    else:
        ids = [None, None] + vocab
        index_of = {s: j for j, s in enumerate(ids) if s is not None}
    V = len(ids)
    log("%d events (%d training, %d held out), %d training sessions, %d items (%.1f s)"
        % (len(events), len(train_ev), len(held_ev), len(seqs), V - FIRST, time.time() - t0))
    if args.heldout_out:
        with open(args.heldout_out, "w") as f:
            for e in held_ev:
                f.write(e[4] + "\n")
        log("held-out events written to %s" % args.heldout_out)

    def to_windows(evs):
        return windows([[index_of.get(i, OOV) for i in s] for s in build_sessions(evs, append_types, args.ttl_ms)],
                       args.max_len)
    X, Y = to_windows(fit_ev)
    val = None
    if val_ev:
        Xv, Yv = to_windows(val_ev)
        val = (Xv, Yv) if Xv.shape[0] else None
    if args.patience > 0 and val is None:
        log("no validation windows (too few training sessions): training %d epochs without early stopping"
            % args.epochs)
    if args.batch <= 0:
        args.batch = max(16, min(256, X.shape[0] // 20))
    model = make_model(args, V)
    log("batch %d windows" % args.batch)
    log("%s: d=%d layers=%d max_len=%d, %d parameters, %d training windows, %d validation windows"
        % (args.arch, args.d_model, args.n_layers, args.max_len, sum(p.numel() for p in model.parameters()),
           X.shape[0], val[0].shape[0] if val else 0))
    epochs_run, best_epoch, best_val = train(model, X, Y, args, log, val)

    # Export (the state_dict already carries bundle names) and verify against streamrec.
    W = {k: v.detach().to(torch.float64) for k, v in model.state_dict().items()}
    mcfg, _ = export.infer_model(args.arch, W, args.n_heads, args.activation, 1e-5)
    mcfg["max_len"] = args.max_len
    version = args.version or "%s-%s-seed%d" % (args.arch, os.path.splitext(os.path.basename(args.events))[0], args.seed)
    export.write_bundle(args.out, args.arch, W, mcfg, ids, FIRST, OOV, version, args.dtype.upper(), attrs)
    log("bundle written to %s (version %s)" % (args.out, version))
    if args.dtype != "f32":  # evaluate what streamrec will serve: the rounded weights
        ref = srbundle.load_bundle(args.out)[1]
        model.load_state_dict({k: ref[k].float() for k in model.state_dict()})

    wins, targets, excl = replay_requests(held_ev, index_of, append_types, trigger_types, args.ttl_ms,
                                          args.max_len, exclude_seen)
    # The training module in float64 must compute the bundle's arithmetic: check a few sessions.
    ref = srbundle.Reference(args.out)
    m64 = model.double().eval()
    worst = 0.0
    with torch.no_grad():
        for w in wins[:20]:
            v_ref, _ = ref.session_vector(w)
            v = m64(torch.tensor([w]))[0, -1]
            worst = max(worst, float((v - v_ref).abs().max()))
    model.float()
    if worst > 1e-8:
        sys.exit("train: the training module and the bundle reference disagree by %g" % worst)
    if not args.no_verify:
        sample = [[ids[j] if j >= FIRST else "unknown" for j in w] for w in wins[:args.verify_sessions]]
        try:
            export.verify(args.out, export.find_streamrec(args.streamrec), sample, k=args.k, log=lambda m: log(m))
        except export.ExportError as e:
            sys.exit("train: export check failed: %s" % e)

    recs = model_recs(model, wins, args.k, excl)
    pop_order = [index_of[i] for i in vocab]
    base = popular_recs(pop_order, excl, args.k)
    mm, bm = rank_metrics(recs, targets, args.k), rank_metrics(base, targets, args.k)
    log("held-out: %d recommendations, %d with a target" % (len(wins), mm["evaluated"]))
    print("%-14s HitRate@%d %.4f   MRR@%d %.4f   NDCG@%d %.4f"
          % ("model", args.k, mm["hit_rate"], args.k, mm["mrr"], args.k, mm["ndcg"]))
    print("%-14s HitRate@%d %.4f   MRR@%d %.4f   NDCG@%d %.4f"
          % ("most-popular", args.k, bm["hit_rate"], args.k, bm["mrr"], args.k, bm["ndcg"]))
    if args.report:
        with open(args.report, "w") as f:
            json.dump({"bundle": args.out, "version": version, "arch": args.arch, "items": V - FIRST,
                       "events": len(events), "heldout_events": len(held_ev), "recommendations": len(wins),
                       "epochs": epochs_run, "best_epoch": best_epoch, "validation_loss": best_val,
                       "test": args.test, "model": mm, "most_popular": bm,
                       "seconds": round(time.time() - t0, 1)}, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
