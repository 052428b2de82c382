#!/usr/bin/env python3
"""replay_test.py — integration tests of `streamrec replay` (issue 3), stdlib only; CTest runs
one case per test (tests/integration/CMakeLists.txt):

  replay_test.py CASE --streamrec BIN --tool AVRO_TOOL --data TESTS_DATA_DIR

CASE is one of
  golden       defaults (fresh temporary rocksdb state, no ./streamrec-state left behind)
               reproduce the golden file (items; scores within 1e-4 relative, compare_recs.py),
               the same run twice gives the same bytes, and the --report JSON counts 1000
               events, 50 invalid by reason, 781 recommendations;
  state_dir    a named state.dir holding an earlier replay is refused without --resume, a
               finished one resumed emits nothing, another input on it is refused;
  batch_size   batch.max.events=1 and 512 give identical bytes (DESIGN §8): the CPU backend
               computes a session's rows the same way whichever sessions share its batch and
               wherever its rows sit (row-deterministic GEMM, per-row element-wise ops,
               per-session attention), and top-k scores are re-scored on the host;
  backend      state.backend=memory and rocksdb give identical bytes;
  restart      a replay SIGKILLed half-way and restarted with --resume on its state.dir, against one clean
               run: the killed run's complete lines plus the restarted run's lines hold every
               clean-run line, and every line (duplicates included) is byte-identical to the
               clean line of the same source offset; the restart resumed after the committed
               applied offset (it re-emits fewer lines than the clean run);
  avro_input   the Avro container form of the events (valid events only, written by avro_tool)
               gives the same recommendations as the JSON form. Invalid lines are not in the
               container, so its record numbers differ from the JSON line numbers: offsets are
               mapped back through the list of skipped lines avro_tool prints, and the topic
               (the file's base name) is the only other difference. Batches hold different
               events (no invalid ones), yet scores are identical (see batch_size);
  avro_output  --output X.avro writes a container that reads back (avro_tool recs) to the same
               bytes as the JSON Lines output;
  exclude_types  recs.exclude_seen=purchase[,add_to_cart] excludes exactly the items the session
               had such an event for (viewed items come back), true all seen items.
  incremental  gru4rec with encode.incremental=true (each session resumes from the hidden state
               stored with it, DESIGN §3.1) gives the bytes of encode.incremental=false over
               sessions that outgrow max_len, on both state backends, at batch sizes 1 and 37,
               with session.max_len below the model's, and across a resumed run whose states
               come from disk (rocksdb state.dir); gpt2 (2 layers) through its encode cache
               (the default size and one that evicts, batch sizes 1 and 37, session.max_len
               below the model's) gives the bytes of encode.cache.bytes=0.
  trending     recs.trending=true, recs.trending.slots=2 (DESIGN §4.6), with and without
               recs.sampling=softmax (§4.8, which also changes the model's picks), and
               recs.sampling=epsilon alone (0.2 +- 0.02 of the slots random): batch.max.events=1
               and 512 and the rocksdb store give identical bytes; every item says its source,
               model or trending, and trending items appear; the Avro container (schema version
               2) reads back to the same bytes, and read through version 1 (a reader that
               predates item sources) to the same lines without the sources.
Exit 0 on success, 1 with the reason.
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
COMPARE = os.path.join(HERE, "..", "gen", "compare_recs.py")


class Fail(Exception):
    pass


def replay(args, cwd, inp, out, sets=(), report=None, extra=(), bundle="gpt2-small"):
    cmd = [args.streamrec, "replay", "--set", "model.bundle=" + os.path.join(args.data, bundle),
           "--set", "device=cpu", "--set", "log.level=error", "--input", inp, "--output", out]
    for s in sets:
        cmd += ["--set", s]
    if report:
        cmd += ["--report", report]
    cmd += list(extra)
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise Fail("%s exited %d: %s" % (" ".join(cmd), p.returncode, p.stderr.decode()[-2000:]))
    return cmd


def read_lines(path):
    with open(path, "rb") as f:
        return f.read().splitlines()


def same_bytes(a, b, what):
    la, lb = read_lines(a), read_lines(b)
    if la == lb:
        if not la:
            raise Fail("%s: both outputs are empty" % what)
        return
    for n, (x, y) in enumerate(zip(la, lb)):
        if x != y:
            raise Fail("%s: line %d differs:\n  %s\n  %s" % (what, n + 1, x[:300], y[:300]))
    raise Fail("%s: %d lines vs %d" % (what, len(la), len(lb)))


def rec_diff(x, y, rel):
    """None when JSON lines x and y hold the same recommendation: every field equal, the same
    items in the same order, scores equal within `rel` relative; else the reason. Returns the
    largest relative score difference as the second value."""
    if x == y:
        return None, 0.0
    xj, yj = json.loads(x), json.loads(y)
    xi, yi = xj.pop("items"), yj.pop("items")
    if xj != yj or [i["item_id"] for i in xi] != [i["item_id"] for i in yi]:
        return "differs:\n  %s\n  %s" % (x[:300], y[:300]), 0.0
    worst = 0.0
    for p, q in zip(xi, yi):
        e = abs(p["score"] - q["score"]) / max(abs(p["score"]), 1e-30)
        worst = max(worst, e)
        if e > rel:
            return "score %r vs %r" % (p["score"], q["score"]), worst
    return None, worst


def events_path(args):
    return os.path.join(args.data, "gpt2-small.events.jsonl")


def case_golden(args, tmp):
    out, rep = os.path.join(tmp, "recs.jsonl"), os.path.join(tmp, "report.json")
    replay(args, tmp, events_path(args), out, report=rep)  # defaults: fresh temporary rocksdb
    if os.path.exists(os.path.join(tmp, "streamrec-state")):
        raise Fail("a replay without state.dir wrote ./streamrec-state (it must start fresh)")
    again = os.path.join(tmp, "again.jsonl")
    replay(args, tmp, events_path(args), again)
    same_bytes(out, again, "the same replay run twice")
    p = subprocess.run([sys.executable, COMPARE,
                        os.path.join(args.data, "gpt2-small.events.expected.jsonl"), out])
    if p.returncode != 0:
        raise Fail("output differs from the golden file")
    with open(rep) as f:
        r = json.load(f)
    want = {"missing_field": 9, "not_object": 3, "wrong_type": 23, "invalid_json": 15}
    if r["events"] != 1000 or r["invalid"] != 50 or r["recommendations"] != 781:
        raise Fail("report counts: events %s invalid %s recommendations %s" %
                   (r["events"], r["invalid"], r["recommendations"]))
    if r["invalid_by_reason"] != want:
        raise Fail("invalid_by_reason %r, expected %r" % (r["invalid_by_reason"], want))
    if sum(r["invalid_by_reason"].values()) != r["invalid"]:
        raise Fail("reasons do not add up to invalid")


def case_batch_size(args, tmp):
    a, b = os.path.join(tmp, "b1.jsonl"), os.path.join(tmp, "b512.jsonl")
    replay(args, tmp, events_path(args), a, ["state.backend=memory", "batch.max.events=1"])
    replay(args, tmp, events_path(args), b, ["state.backend=memory", "batch.max.events=512"])
    same_bytes(a, b, "batch.max.events 1 vs 512")


def case_backend(args, tmp):
    a, b = os.path.join(tmp, "mem.jsonl"), os.path.join(tmp, "rocks.jsonl")
    replay(args, tmp, events_path(args), a, ["state.backend=memory", "batch.max.events=37"])
    replay(args, tmp, events_path(args), b, ["state.backend=rocksdb", "batch.max.events=37",
                                              "state.dir=" + os.path.join(tmp, "db")])
    same_bytes(a, b, "state.backend memory vs rocksdb")


def case_trending(args, tmp):
    on = ["recs.trending=true", "recs.trending.slots=2"]
    a, b, c = (os.path.join(tmp, n) for n in ("t1.jsonl", "t512.jsonl", "trocks.jsonl"))
    replay(args, tmp, events_path(args), a, on + ["state.backend=memory", "batch.max.events=1"])
    replay(args, tmp, events_path(args), b, on + ["state.backend=memory", "batch.max.events=512"])
    replay(args, tmp, events_path(args), c, on + ["state.backend=rocksdb", "batch.max.events=37",
                                                  "state.dir=" + os.path.join(tmp, "db")])
    same_bytes(a, b, "trending: batch.max.events 1 vs 512")
    same_bytes(a, c, "trending: state.backend memory vs rocksdb")
    samp = on + ["recs.sampling=softmax", "recs.sampling.candidates=30"]
    sa, sb, sc = (os.path.join(tmp, n) for n in ("s1.jsonl", "s512.jsonl", "srocks.jsonl"))
    replay(args, tmp, events_path(args), sa, samp + ["state.backend=memory", "batch.max.events=1"])
    replay(args, tmp, events_path(args), sb, samp + ["state.backend=memory", "batch.max.events=512"])
    replay(args, tmp, events_path(args), sc, samp + ["state.backend=rocksdb", "batch.max.events=37",
                                                     "state.dir=" + os.path.join(tmp, "sdb")])
    same_bytes(sa, sb, "trending+sampling: batch.max.events 1 vs 512")
    same_bytes(sa, sc, "trending+sampling: state.backend memory vs rocksdb")
    if read_lines(sa) == read_lines(a):
        raise Fail("recs.sampling=softmax changed nothing")
    eps = ["recs.sampling=epsilon", "recs.sampling.epsilon=0.2"]
    ea, eb = os.path.join(tmp, "e1.jsonl"), os.path.join(tmp, "erocks.jsonl")
    replay(args, tmp, events_path(args), ea, eps + ["state.backend=memory", "batch.max.events=1"])
    replay(args, tmp, events_path(args), eb, eps + ["state.backend=rocksdb", "batch.max.events=512",
                                                    "state.dir=" + os.path.join(tmp, "edb")])
    same_bytes(ea, eb, "epsilon: batch 1 memory vs batch 512 rocksdb")
    n = {"model": 0, "random": 0}
    for line in read_lines(ea):
        for it in json.loads(line)["items"]:
            n[it["source"]] += 1
    share = n["random"] / float(n["model"] + n["random"])
    if abs(share - 0.2) > 0.02:
        raise Fail("epsilon=0.2: %.3f of the slots are random" % share)
    sources = {}
    for line in read_lines(a):
        for it in json.loads(line)["items"]:
            sources[it["source"]] = sources.get(it["source"], 0) + 1
    if set(sources) != {"model", "trending"} or sources["trending"] < 781 * 2:
        raise Fail("trending: item sources %r (expected model and >= 2 trending per line)" % sources)
    av, back, v1 = (os.path.join(tmp, n) for n in ("t.avro", "back.jsonl", "v1.jsonl"))
    replay(args, tmp, events_path(args), av, on + ["state.backend=memory"])
    if subprocess.run([args.tool, "recs", av, back]).returncode != 0:
        raise Fail("avro_tool recs could not read %s" % av)
    same_bytes(a, back, "trending: --output .jsonl vs .avro read back")
    if subprocess.run([args.tool, "recs-v1", av, v1]).returncode != 0:
        raise Fail("avro_tool recs-v1 could not read %s through schema version 1" % av)
    want = []
    for line in read_lines(a):
        r = json.loads(line)
        want.append([(it["item_id"], it["score"]) for it in r["items"]])
    got = [[(it["item_id"], it["score"]) for it in json.loads(line)["items"]] for line in read_lines(v1)]
    if got != want or any(b'"source": "model"' in l for l in read_lines(v1)):
        raise Fail("trending: version-1 reading of the version-2 container differs")


def generate_events(bundle, path, n_events, n_sessions, seed):
    """Deterministic events over the bundle's items: sessions interleave, types mixed."""
    with open(os.path.join(bundle, "items.tsv")) as f:
        head = f.readline().rstrip("\n").split("\t")
        col = head.index("item_id")
        items = [line.rstrip("\n").split("\t")[col] for line in f]
    rng = random.Random(seed)
    types = ["view"] * 6 + ["click"] * 2 + ["add_to_cart", "purchase", "wishlist"]
    t = 1763856000000
    with open(path, "w") as f:
        for _ in range(n_events):
            t += rng.randint(0, 400)
            s = rng.randrange(n_sessions)
            f.write(json.dumps({"session_id": "s%d" % s, "user_id": "u%d" % (s % 97) if s % 3 else None,
                                "item_id": rng.choice(items), "event_type": rng.choice(types),
                                "timestamp_ms": t}) + "\n")


def by_offset(lines, what):
    m = {}
    for ln in lines:
        off = json.loads(ln)["source"]["offset"]
        if off in m and m[off] != ln:
            raise Fail("%s: two different lines for offset %d" % (what, off))
        m[off] = ln
    return m


def case_restart(args, tmp):
    ev = os.path.join(tmp, "events.jsonl")
    generate_events(os.path.join(args.data, "gpt2-small"), ev, 12000, 300, 7)
    clean, killed, resumed = (os.path.join(tmp, n) for n in ("clean.jsonl", "killed.jsonl", "resumed.jsonl"))
    sets = ["state.backend=rocksdb", "batch.max.events=1"]
    replay(args, tmp, ev, clean, sets + ["state.dir=" + os.path.join(tmp, "db-clean")])
    clean_lines = read_lines(clean)
    if len(clean_lines) < 5000:
        raise Fail("clean run has only %d lines" % len(clean_lines))
    db = "state.dir=" + os.path.join(tmp, "db")
    full = [args.streamrec, "replay", "--set", "model.bundle=" + os.path.join(args.data, "gpt2-small"),
            "--set", "device=cpu", "--set", "log.level=error", "--input", ev, "--output", killed]
    for s in sets + [db]:
        full += ["--set", s]
    p = subprocess.Popen(full, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = len(clean_lines) // 4
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        try:
            if os.path.getsize(killed) > 0 and len(read_lines(killed)) >= target:
                break
        except FileNotFoundError:
            pass
        time.sleep(0.002)
    if p.poll() is not None:
        raise Fail("the replay ended (rc %s) before the kill: make the input larger" % p.returncode)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    with open(killed, "rb") as f:
        data = f.read()
    part = data.split(b"\n")
    torn = part.pop()  # b"" when the file ends with a newline, else a torn last line
    if len(part) >= len(clean_lines):
        raise Fail("the kill landed after the end (%d lines)" % len(part))
    replay(args, tmp, ev, resumed, sets + [db], extra=["--resume"])
    resumed_lines = read_lines(resumed)
    if not resumed_lines or len(resumed_lines) >= len(clean_lines):
        raise Fail("the restarted run did not resume: %d lines of %d" %
                   (len(resumed_lines), len(clean_lines)))
    ref = by_offset(clean_lines, "clean")
    got = {}
    for what, lines in (("killed", part), ("restarted", resumed_lines)):
        for ln in lines:
            off = json.loads(ln)["source"]["offset"]
            if ref.get(off) != ln:
                raise Fail("%s run, offset %d: not byte-identical to the clean run:\n  %s\n  %s" %
                           (what, off, ln[:300], (ref.get(off) or b"(none)")[:300]))
            got[off] = got.get(off, 0) + 1
    missing = sorted(set(ref) - set(got))
    if missing:
        raise Fail("%d clean-run lines missing from killed+restarted, first offset %d" %
                   (len(missing), missing[0]))
    dups = sum(1 for v in got.values() if v > 1)
    first = json.loads(resumed_lines[0])["source"]["offset"]
    print("restart: killed after %d lines (torn tail %d bytes), restarted at offset %d, "
          "%d duplicates (byte-identical), %d lines in all" %
          (len(part), len(torn), first, dups, len(clean_lines)))


def case_state_dir(args, tmp):
    """A named state.dir that holds an earlier replay is refused without --resume (one line
    naming it), with --resume the finished replay has nothing left to emit, and another input
    on the same state.dir is refused whatever the flags."""
    db = ["state.backend=rocksdb", "state.dir=" + os.path.join(tmp, "db")]
    first = os.path.join(tmp, "first.jsonl")
    replay(args, tmp, events_path(args), first, db)
    if len(read_lines(first)) != 781:
        raise Fail("first replay: %d recommendations" % len(read_lines(first)))
    cmd = [args.streamrec, "replay", "--set", "model.bundle=" + os.path.join(args.data, "gpt2-small"),
           "--set", "device=cpu", "--input", events_path(args), "--output", os.path.join(tmp, "x.jsonl")]
    for s in db:
        cmd += ["--set", s]
    p = subprocess.run(cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err = p.stderr.decode()
    if p.returncode == 0 or "already holds applied offsets" not in err or "state.dir" not in err:
        raise Fail("second replay on the same state.dir: rc %d, stderr %r" % (p.returncode, err[-500:]))
    resumed = os.path.join(tmp, "resumed.jsonl")
    replay(args, tmp, events_path(args), resumed, db, extra=["--resume"])
    if read_lines(resumed):
        raise Fail("--resume of a finished replay emitted %d lines" % len(read_lines(resumed)))
    other = os.path.join(tmp, "other.jsonl")
    shutil.copy(events_path(args), other)
    cmd[cmd.index("--input") + 1] = other
    p = subprocess.run(cmd + ["--resume"], cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err = p.stderr.decode()
    if p.returncode == 0 or "holds the state of" not in err:
        raise Fail("another input on the same state.dir: rc %d, stderr %r" % (p.returncode, err[-500:]))


def case_avro_input(args, tmp):
    av = os.path.join(tmp, "events.avro")
    p = subprocess.run([args.tool, "events", events_path(args), av], stdout=subprocess.PIPE)
    if p.returncode != 0:
        raise Fail("avro_tool events failed")
    skipped = [int(x) for x in p.stdout.split()]
    if len(skipped) != 50:
        raise Fail("avro_tool skipped %d lines, expected the 50 invalid ones" % len(skipped))
    js, ao = os.path.join(tmp, "from_json.jsonl"), os.path.join(tmp, "from_avro.jsonl")
    rep = os.path.join(tmp, "avro_report.json")
    replay(args, tmp, events_path(args), js, ["state.backend=memory"])
    replay(args, tmp, av, ao, ["state.backend=memory"], report=rep)
    with open(rep) as f:
        r = json.load(f)
    if r["events"] != 950 or r["invalid"] != 0:
        raise Fail("avro replay report: events %s invalid %s" % (r["events"], r["invalid"]))
    jl, al = read_lines(js), read_lines(ao)
    if len(jl) != len(al) or not jl:
        raise Fail("%d recommendations from JSON, %d from Avro" % (len(jl), len(al)))
    skipped_set = set(skipped)
    for n, (x, y) in enumerate(zip(jl, al)):
        xj, yj = json.loads(x), json.loads(y)
        line = xj["source"]["offset"]
        if line in skipped_set:
            raise Fail("a recommendation for invalid line %d" % line)
        rank = line - sum(1 for s in skipped if s < line)  # record number in the container
        if yj["source"] != {"topic": "events.avro", "partition": 0, "offset": rank}:
            raise Fail("line %d: source %r, expected record %d of events.avro" % (n + 1, yj["source"], rank))
        xj["source"] = yj["source"]
        why, _ = rec_diff(json.dumps(xj).encode(), json.dumps(yj).encode(), 0.0)
        if why:
            raise Fail("line %d (beyond source) %s" % (n + 1, why))


def case_avro_output(args, tmp):
    js, av, back = (os.path.join(tmp, n) for n in ("recs.jsonl", "recs.avro", "back.jsonl"))
    replay(args, tmp, events_path(args), js, ["state.backend=memory"])
    replay(args, tmp, events_path(args), av, ["state.backend=memory"])
    with open(av, "rb") as f:
        if f.read(4) != b"Obj\x01":
            raise Fail("%s is not an Avro container" % av)
    if subprocess.run([args.tool, "recs", av, back]).returncode != 0:
        raise Fail("avro_tool recs could not read %s" % av)
    same_bytes(js, back, "--output .jsonl vs .avro read back")


def stored_history(args):
    """offset -> (session, item, type) of the golden file's valid events (duplicate keys and
    wrong field types are invalid, as for the decoder)."""
    def no_dups(pairs):
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise ValueError("duplicate key")
        return dict(pairs)
    out = {}
    with open(events_path(args), "rb") as f:
        for off, line in enumerate(f):
            try:
                e = json.loads(line, object_pairs_hook=no_dups)
            except ValueError:
                continue
            if (isinstance(e, dict) and all(isinstance(e.get(k), str) for k in ("session_id", "item_id", "event_type"))
                    and isinstance(e.get("timestamp_ms"), int) and not isinstance(e.get("timestamp_ms"), bool)):
                out[off] = (e["session_id"], e["item_id"], e["event_type"])
    return out


def case_exclude_types(args, tmp):
    """recs.exclude_seen=purchase never recommends an item its session purchased before the
    trigger, yet recommends items the session only viewed (the check can fail: with false,
    purchased items come back); true recommends no seen item at all. Sessions never expire and
    keep every item here (session.ttl.ms=0, a long session.max_len), so the session is exactly
    the file's history."""
    hist = stored_history(args)
    stored = {"view", "click", "add_to_cart", "purchase"}
    counts = {}
    for value in ("false", "purchase", "purchase,add_to_cart", "true"):
        out = os.path.join(tmp, "recs-%s.jsonl" % value.replace(",", "+"))
        replay(args, tmp, events_path(args), out,
               ["state.backend=memory", "session.ttl.ms=0", "session.max_len=1000",
                "recs.exclude_seen=" + value])
        bought = viewed = n = 0
        for line in read_lines(out):
            r = json.loads(line)
            n += 1
            seen = {}
            for off in range(r["source"]["offset"] + 1):
                h = hist.get(off)
                if h and h[0] == r["session_id"] and h[2] in stored:
                    seen.setdefault(h[1], set()).add(h[2])
            for it in r["items"]:
                t = seen.get(it["item_id"])
                if t and ("purchase" in t or (value == "purchase,add_to_cart" and "add_to_cart" in t)):
                    bought += 1
                elif t:
                    viewed += 1
        counts[value] = (n, bought, viewed)
    print("exclude_seen: recommendations, excluded-type items back, other seen items back:", counts)
    if counts["false"][1] == 0:
        raise Fail("with exclude_seen=false no purchased item came back: the test cannot fail")
    for v in ("purchase", "purchase,add_to_cart"):
        if counts[v][1] != 0:
            raise Fail("exclude_seen=%s recommended %d excluded items" % (v, counts[v][1]))
        if counts[v][2] == 0:
            raise Fail("exclude_seen=%s recommended no viewed item again" % v)
    if counts["true"][1] + counts["true"][2] != 0:
        raise Fail("exclude_seen=true recommended a seen item")
    if len({c[0] for c in counts.values()}) != 1:
        raise Fail("the number of recommendations changed with exclude_seen: %r" % counts)


def case_incremental(args, tmp):
    bundle = "gru4rec-small"
    ev = os.path.join(tmp, "events.jsonl")
    # 3000 events over 40 sessions: ~75 per session, past max_len 20
    generate_events(os.path.join(args.data, bundle), ev, 3000, 40, 11)
    ref = os.path.join(tmp, "ref.jsonl")
    replay(args, tmp, ev, ref, ["state.backend=memory", "encode.incremental=false"], bundle=bundle)
    runs = [("memory b1", ["state.backend=memory", "batch.max.events=1"]),
            ("memory b37", ["state.backend=memory", "batch.max.events=37"]),
            ("rocksdb b37", ["state.backend=rocksdb", "batch.max.events=37",
                             "state.dir=" + os.path.join(tmp, "db1")])]
    for i, (what, sets) in enumerate(runs):
        out = os.path.join(tmp, "inc%d.jsonl" % i)
        replay(args, tmp, ev, out, sets + ["encode.incremental=true"], bundle=bundle)
        same_bytes(ref, out, "encode.incremental true (%s) vs false" % what)
    # the session store keeps fewer items than the model reads: its window slides first
    short_ref, short = os.path.join(tmp, "short_ref.jsonl"), os.path.join(tmp, "short.jsonl")
    replay(args, tmp, ev, short_ref, ["state.backend=memory", "session.max_len=7",
                                      "encode.incremental=false"], bundle=bundle)
    replay(args, tmp, ev, short, ["state.backend=memory", "session.max_len=7",
                                  "batch.max.events=13"], bundle=bundle)
    same_bytes(short_ref, short, "session.max_len=7: encode.incremental true vs false")
    # two runs on one state.dir: the first replays half the events, the second resumes after
    # them on the whole file (the same input path, so the store accepts it) with the states of
    # the first read from disk
    with open(ev) as f:
        lines = f.readlines()
    part = os.path.join(tmp, "part.jsonl")
    for inc, name in (("true", "o"), ("false", "r")):
        db = ["state.backend=rocksdb", "batch.max.events=29", "encode.incremental=" + inc,
              "state.dir=" + os.path.join(tmp, "db_" + name)]
        with open(part, "w") as f:
            f.writelines(lines[:1500])
        replay(args, tmp, part, os.path.join(tmp, name + "1.jsonl"), db, bundle=bundle)
        with open(part, "w") as f:
            f.writelines(lines)
        replay(args, tmp, part, os.path.join(tmp, name + "2.jsonl"), db, bundle=bundle,
               extra=["--resume"])
    same_bytes(os.path.join(tmp, "r1.jsonl"), os.path.join(tmp, "o1.jsonl"),
               "first half on a state.dir, incremental true vs false")
    same_bytes(os.path.join(tmp, "r2.jsonl"), os.path.join(tmp, "o2.jsonl"),
               "second half resumed from the state.dir, incremental true vs false")
    # gpt2 (2 layers) through its encode cache: the default 64 MiB, one that evicts all along,
    # batches of 1 and 37, the store's window below the model's: the bytes of no cache
    bundle = "gpt2-small"
    gev = os.path.join(tmp, "gpt2_events.jsonl")
    generate_events(os.path.join(args.data, bundle), gev, 3000, 40, 12)
    gref = os.path.join(tmp, "gpt2_ref.jsonl")
    replay(args, tmp, gev, gref, ["state.backend=memory", "encode.cache.bytes=0"], bundle=bundle)
    gruns = [("default cache, b1", ["batch.max.events=1"]),
             ("default cache, b37", ["batch.max.events=37"]),
             ("20000-byte cache, b37", ["batch.max.events=37", "encode.cache.bytes=20000"])]
    for i, (what, sets) in enumerate(gruns):
        out = os.path.join(tmp, "gpt2_%d.jsonl" % i)
        replay(args, tmp, gev, out, ["state.backend=memory"] + sets, bundle=bundle)
        same_bytes(gref, out, "gpt2 %s vs encode.cache.bytes=0" % what)
    replay(args, tmp, gev, short_ref, ["state.backend=memory", "session.max_len=7",
                                       "encode.cache.bytes=0"], bundle=bundle)
    replay(args, tmp, gev, short, ["state.backend=memory", "session.max_len=7",
                                   "batch.max.events=13"], bundle=bundle)
    same_bytes(short_ref, short, "gpt2 session.max_len=7: cache vs none")


def case_compare(args, tmp):
    """Several bundles over the same events in one pass: each bundle's output is byte for byte
    its own replay's; the report's metrics are each bundle's alone; a bundle against itself
    differs by exactly 0; the bootstrap interval holds the difference and is reproducible."""
    ev = events_path(args)
    singles = {}
    for name, bundle in (("g", "gpt2-small"), ("r", "gru4rec-small")):
        singles[name] = (os.path.join(tmp, "single_%s.jsonl" % name), os.path.join(tmp, "single_%s.json" % name))
        replay(args, tmp, ev, singles[name][0], ["state.backend=memory", "batch.max.events=37"],
               report=singles[name][1], extra=["--eval"], bundle=bundle)
    out, rep = os.path.join(tmp, "cmp.jsonl"), os.path.join(tmp, "cmp.json")
    bundles = ["--bundle", "g=" + os.path.join(args.data, "gpt2-small"),
               "--bundle", "r=" + os.path.join(args.data, "gru4rec-small"),
               "--bundle", "g2=" + os.path.join(args.data, "gpt2-small")]
    replay(args, tmp, ev, out, ["state.backend=memory", "batch.max.events=37"], report=rep,
           extra=["--eval"] + bundles)
    same_bytes(singles["g"][0], os.path.join(tmp, "cmp.g.jsonl"), "bundle g in a comparison vs alone")
    same_bytes(singles["r"][0], os.path.join(tmp, "cmp.r.jsonl"), "bundle r in a comparison vs alone")
    same_bytes(singles["g"][0], os.path.join(tmp, "cmp.g2.jsonl"), "bundle g2 in a comparison vs g alone")
    with open(rep) as f:
        r = json.load(f)
    if [b["name"] for b in r["bundles"]] != ["g", "r", "g2"]:
        raise Fail("report bundles %r" % [b["name"] for b in r["bundles"]])
    for b in r["bundles"]:
        with open(singles[b["name"][:1]][1]) as f:
            alone = json.load(f)
        for key in ("events", "invalid", "recommendations", "unknown_items", "sessions"):
            if b[key] != alone[key]:
                raise Fail("bundle %s: %s %r in the comparison, %r alone" % (b["name"], key, b[key], alone[key]))
        for key in ("evaluated", "hits", "mrr", "ndcg", "coverage", "unknown_targets"):
            if b["eval"][key] != alone["eval"][key]:
                raise Fail("bundle %s: eval.%s %r in the comparison, %r alone" %
                           (b["name"], key, b["eval"][key], alone["eval"][key]))
    cmp = {c["candidate"]: c for c in r["comparison"]}
    if set(cmp) != {"r", "g2"} or any(c["baseline"] != "g" for c in r["comparison"]):
        raise Fail("comparison rows %r" % r["comparison"])
    g, rr = r["bundles"][0]["eval"], r["bundles"][1]["eval"]
    for m in ("hit_rate", "mrr", "ndcg"):
        if cmp["g2"][m] != {"diff": 0.0, "lo": 0.0, "hi": 0.0}:
            raise Fail("a bundle against itself: %s %r" % (m, cmp["g2"][m]))
        d = cmp["r"][m]
        if abs(d["diff"] - (rr[m] - g[m])) > 2e-6:
            raise Fail("%s: diff %r, the bundles' metrics differ by %r" % (m, d["diff"], rr[m] - g[m]))
        if not d["lo"] <= d["diff"] <= d["hi"] or d["lo"] == d["hi"]:
            raise Fail("%s: interval %r does not hold the difference" % (m, d))
    if cmp["r"]["sessions"] < 1 or cmp["r"]["resamples"] != 1000:
        raise Fail("sessions %r resamples %r" % (cmp["r"]["sessions"], cmp["r"]["resamples"]))
    rep2 = os.path.join(tmp, "cmp2.json")
    replay(args, tmp, ev, os.path.join(tmp, "cmp2.jsonl"), ["state.backend=memory"], report=rep2,
           extra=["--eval"] + bundles)
    with open(rep2) as f:
        if json.load(f)["comparison"] != r["comparison"]:
            raise Fail("the comparison differs between two runs (batch 37 vs 256)")
    # refused: one --bundle, a topic output, a name twice, a bundle that does not load
    for extra, want in ((["--bundle", "g=" + os.path.join(args.data, "gpt2-small")], "two or more"),
                        (bundles[:4] + ["--bundle", "g=" + os.path.join(args.data, "gpt2-small")], "twice"),
                        (bundles[:2] + ["--bundle", "x=" + os.path.join(tmp, "nope")], "bundle x")):
        cmd = [args.streamrec, "replay", "--set", "device=cpu", "--set", "state.backend=memory",
               "--input", ev, "--output", out, "--eval"] + extra
        p = subprocess.run(cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if p.returncode == 0 or want not in p.stderr.decode():
            raise Fail("%s: exit %d, stderr %r (expected %r)" % (" ".join(extra), p.returncode,
                                                                  p.stderr.decode()[-300:], want))


def case_variants(args, tmp):
    """A/B in one graph: the same bytes for batch sizes 1 and 512 and for memory and RocksDB
    state; a session never changes arm; each arm's items are what its bundle alone answers; the
    version and variant fields name the arm."""
    ev = events_path(args)
    cand = os.path.join(tmp, "cand")
    shutil.copytree(os.path.join(args.data, "gpt2-small"), cand)
    with open(os.path.join(cand, "bundle.json")) as f:
        meta = json.load(f)
    meta["version"] = "candidate-v2"
    with open(os.path.join(cand, "bundle.json"), "w") as f:
        json.dump(meta, f)
    ab = ["model.variants=control,cand", "model.variant.control.share=40",
          "model.variant.cand.bundle=" + cand]
    outs = []
    for what, sets in (("b1", ["state.backend=memory", "batch.max.events=1"]),
                       ("b512", ["state.backend=memory", "batch.max.events=512"]),
                       ("rocksdb", ["state.backend=rocksdb", "batch.max.events=37",
                                    "state.dir=" + os.path.join(tmp, "db")])):
        out = os.path.join(tmp, "ab_%s.jsonl" % what)
        replay(args, tmp, ev, out, sets + ab)
        outs.append((what, out))
    for what, out in outs[1:]:
        same_bytes(outs[0][1], out, "A/B output, batch 1 vs %s" % what)
    single = os.path.join(tmp, "single.jsonl")
    replay(args, tmp, ev, single, ["state.backend=memory"])
    by_offset_single = {json.loads(l)["source"]["offset"]: json.loads(l) for l in read_lines(single)}
    arm, count = {}, {"control": 0, "cand": 0}
    for line in read_lines(outs[0][1]):
        r = json.loads(line)
        v = r.get("variant")
        if v not in count:
            raise Fail("variant %r in %s" % (v, line[:200]))
        count[v] += 1
        if arm.setdefault(r["session_id"], v) != v:
            raise Fail("session %s changed arm" % r["session_id"])
        want = {"control": "gpt2-small-v1", "cand": "candidate-v2"}[v]
        if r["model_version"] != want:
            raise Fail("variant %s answered with model_version %s" % (v, r["model_version"]))
        s = by_offset_single[r["source"]["offset"]]
        if r["items"] != s["items"]:
            raise Fail("offset %s: items differ from the bundle alone" % r["source"]["offset"])
    if sum(count.values()) != len(by_offset_single) or min(count.values()) == 0:
        raise Fail("recommendations by variant %r, %d without variants" % (count, len(by_offset_single)))
    # without model.variants nothing changes: no variant field
    if any(b'"variant"' in l for l in read_lines(single)):
        raise Fail("a recommendation without model.variants has a variant field")


CASES = {"variants": case_variants, "compare": case_compare, "state_dir": case_state_dir, "golden": case_golden, "batch_size": case_batch_size, "backend": case_backend,
         "restart": case_restart, "avro_input": case_avro_input, "avro_output": case_avro_output,
         "exclude_types": case_exclude_types, "incremental": case_incremental,
         "trending": case_trending}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("case", choices=sorted(CASES))
    ap.add_argument("--streamrec", required=True)
    ap.add_argument("--tool", required=True)
    ap.add_argument("--data", required=True)
    args = ap.parse_args()
    args.streamrec, args.tool, args.data = (os.path.abspath(x) for x in (args.streamrec, args.tool, args.data))
    with tempfile.TemporaryDirectory(prefix="sr-replay-") as tmp:
        try:
            CASES[args.case](args, tmp)
        except Fail as e:
            print("FAIL %s: %s" % (args.case, e))
            return 1
    print("ok: %s" % args.case)
    return 0


if __name__ == "__main__":
    sys.exit(main())
