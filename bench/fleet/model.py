"""The model: the same workload (workload.py) at any size, each strategy's
states kept as sets of cache keys instead of directories, each session's
startup, build and shutdown counted as the real run counts them (calls,
bytes, metadata bytes, objects, remote states read, local bytes), and its
times priced by the costs fitted from the real run (costs.json, costs.py).

What the model takes from the real run (costs.json):
- the per-phase costs of each strategy (seconds per call, per byte moved,
  per metadata byte, per object, per remote state read, per local byte);
- a pushed database's bytes by its records (db_bytes: a + b*records);
- the bytes a push sends per byte built (push_ratio: snapshots compressed);
- seconds per background operation (remote gc, compaction).
What it computes itself: hits, steps built, bytes and objects moved, bytes
stored, from the keys (an object's size is its key's, workload.outputs).

It runs at the real run's size too (label model-small), so its numbers can
be checked against the measurements (report.py prints both).
"""
import json
import os
import time

from workload import Versions, Workload, outputs

KEEP_SAVES = 2      # real.Save.keep
EXPORT_GC_EVERY = 25  # real.Export.gc_every
COMPACT_AT = 4      # real.PoolCli.compact_at


class Keys:
    """Object size and files of each key (memoised)."""

    def __init__(self, wl):
        self.wl, self.info = wl, {}

    def get(self, m, j, k):
        i = self.info.get(k)
        if i is None:
            kind, files = outputs(self.wl, m, j, k)
            i = self.info[k] = (sum(sz for _, sz in files), len(files) + (2 if kind == "snapshot"
                                                                           else 0))
        return i

    def raw(self, keys):
        return sum(self.info[k][0] for k in keys)

    def files(self, keys):
        return sum(self.info[k][1] for k in keys)


class Model:
    def __init__(self, wl, costs):
        self.wl, self.costs = wl, costs
        self.v = Versions(wl)
        self.keys = Keys(wl)
        db = costs["db_bytes"]
        self.db = lambda n: db["a"] + db["b"] * n
        self.ratio = costs["push_ratio"]["value"]

    def build(self, m, has):
        """The real Builder's walk; returns (lookups, hits, built keys)."""
        st = dict(lookups=0, hits=0, built=[])
        memo = set()

        def get(k):
            st["lookups"] += 1
            if k in has or k in built_set:
                st["hits"] += 1
                return True
            return False

        built_set = set()

        def module(x):
            if x in memo:
                return
            memo.add(x)
            ks = self.v.keys(x)
            for j, k in enumerate(ks):
                self.keys.get(x, j, k)
            if get(ks[-1]):
                return
            for d in self.wl.deps[x]:
                module(d)
            for j, k in enumerate(ks):
                if j < len(ks) - 1 and get(k):
                    continue
                built_set.add(k)
                st["built"].append(k)

        module(m)
        return st

    def price(self, name, phase, f):
        c = self.costs["strategies"][name][phase]["coef"]
        return sum(c.get(k, 0) * v for k, v in f.items()) + c.get("one", 0)


def phase():
    return dict(calls=0, bytes=0, meta=0, objects=0, members=0)


def run_strategy(M, name):
    wl = M.wl
    rows = []
    remote_objs = set()         # objects the remote holds (keys)
    tags = {}                   # export: module -> keys of its one member
    saves = {}                  # save: module -> [(keys, tar bytes)]
    members = {}                # cairn: module -> [(id, keys)]
    host = {}                   # cairn: (engine, module) -> set of member ids cached
    host_keys = {}              # cairn: engine -> keys in its cache
    checkins = {}
    live = {}
    n_end = bg_ops = 0
    next_id = [0]
    stored_cache = [0.0]

    dbs = [0.0]  # databases of states taken out, their blobs there until a remote gc
    # running totals (a sum over the remote at every session is too slow at scale):
    # raw bytes of remote_objs, databases of the live members, tars of the saves
    tot = dict(objs=0.0, live_db=0.0, tars=0.0)

    def add_objs(keys):
        new = keys - remote_objs
        tot["objs"] += M.keys.raw(new)
        remote_objs.update(new)

    def stored():
        if name in ("export", "cairn"):
            return M.ratio * tot["objs"] + tot["live_db"] + dbs[0]
        if name == "save":
            return tot["tars"]
        return 0

    for kind, s in wl.events():
        sid, m, e = s["sid"], s["module"], s["engine"]
        if kind == "start":
            M.v.bump(s)
            graph = set()
            for x in wl.closure(m) + [m]:
                for j, k in enumerate(M.v.keys(x)):
                    M.keys.get(x, j, k)
                    graph.add(k)
            up = phase()
            local = set()
            if name == "cold":
                up["calls"] = 1
            elif name == "export":
                up["calls"] = 1
                for x in [m] + wl.deps[m]:
                    up["calls"] += 1
                    t = tags.get(x)
                    if t is not None:
                        up["calls"] += 1
                        up["members"] += 1
                        new = t - local
                        up["bytes"] += M.ratio * M.keys.raw(new)
                        up["objects"] += len(new)
                        up["meta"] += M.db(len(t))
                        local |= t
            elif name == "save":
                picks = [p for p in saves.get(m, [])[-KEEP_SAVES:]]
                for d in wl.deps[m]:
                    picks += saves.get(d, [])[-1:]
                up["calls"] = len(picks) + 1
                for keys, tar in picks:
                    up["bytes"] += tar
                    up["members"] += 1
                    local |= keys
            elif name == "cairn":
                up["calls"] = 1
                hk = host_keys.setdefault(e, set())
                for x in [m] + wl.deps[m]:
                    cached = host.setdefault((e, x), set())
                    for mid, keys in members.get(x, []):
                        up["members"] += 1
                        if mid not in cached:
                            cached.add(mid)
                            new = keys - hk
                            up["bytes"] += M.keys.raw(new) + M.db(len(keys))
                            up["objects"] += 1
                            hk |= keys
                        local |= keys
            b = M.build(m, local)
            built = b["built"]
            local_bytes = up["bytes"] + M.keys.raw(built)  # as costs.features counts it
            live[sid] = (s, up, b, local | set(built), graph, local_bytes)
            continue
        s, up, b, local, graph, local_bytes = live.pop(sid)
        built = b["built"]
        down = phase()
        if name == "export":
            exported = frozenset(local & graph)
            down["calls"] = 3 + (2 if local - graph else 0)
            new = exported - remote_objs
            down["bytes"] = M.ratio * M.keys.raw(new)
            down["objects"] = len(new)
            down["meta"] = M.db(len(exported))
            if m in tags:
                dbs[0] += M.db(len(tags[m]))
                tot["live_db"] -= M.db(len(tags[m]))
            tags[m] = exported
            tot["live_db"] += M.db(len(exported))
            add_objs(exported)
            # every 25 sessions as the real run; at most 20 times in a run
            if (n_end + 1) % max(EXPORT_GC_EVERY, wl.n_sessions // 20) == 0:
                bg_ops += 1
                remote_objs = set().union(*tags.values()) if tags else set()
                tot["objs"] = M.keys.raw(remote_objs)
                dbs[0] = 0.0
        elif name == "save":
            content = frozenset(local)
            tar = M.keys.raw(content) + M.db(len(content)) + 1536 * M.keys.files(content)
            down["calls"], down["bytes"], down["objects"] = 2, tar, 1
            saves.setdefault(m, []).append((content, tar))
            tot["tars"] += tar - sum(t for _, t in saves[m][:-KEEP_SAVES])
            del saves[m][:-KEEP_SAVES]
        elif name == "cairn":
            down["calls"] = 1
            if built:
                down["calls"] += 1
                new = set(built) - remote_objs
                down["bytes"] = M.ratio * M.keys.raw(new)
                down["objects"] = len(new)
                down["meta"] = M.db(len(built))
                next_id[0] += 1
                members.setdefault(m, []).append((next_id[0], frozenset(built)))
                tot["live_db"] += M.db(len(built))
                add_objs(set(built))
                checkins[m] = checkins.get(m, 0) + 1
                if checkins[m] >= COMPACT_AT:
                    checkins[m] = 0
                    bg_ops += 1
                    next_id[0] += 1
                    old = sum(M.db(len(k)) for _, k in members[m])
                    dbs[0] += old  # folded members' databases: no remote gc in this run
                    members[m] = [(next_id[0], frozenset().union(*[k for _, k in members[m]]))]
                    tot["live_db"] += M.db(len(members[m][0][1])) - old
        n_end += 1
        stored_cache[0] = stored()
        up_f = dict(up)
        down_f = dict(down, local=local_bytes)
        bd = dict(lookups=b["lookups"], built=len(built), built_bytes=M.keys.raw(built))
        rows.append(dict(
            strategy=name, sid=sid, module=m, engine=e,
            startup=dict(up_f, s=M.price(name, "startup", up_f)),
            build=dict(bd, hits=b["hits"], s=M.price(name, "build", bd),
                       cold_steps=sum(wl.steps[x] for x in wl.closure(m) + [m])),
            shutdown=dict(down_f, s=M.price(name, "shutdown", down_f)),
            remote_bytes=stored_cache[0]))
    if name == "export":
        bg_ops += 1
        remote_objs = set().union(*tags.values()) if tags else set()
        tot["objs"] = M.keys.raw(remote_objs)
        dbs[0] = 0.0
    bg = M.costs["strategies"][name]["background"]["per_op_s"] * bg_ops
    return rows, dict(strategy=name, remote_bytes=stored(), background_s=bg, background_ops=bg_ops)


def run(out, z, seed=1, size_scale=1.0, label="model-large"):
    costs = json.load(open(os.path.join(out, "costs.json")))
    t0 = time.time()
    wl = Workload(z["modules"], z["sessions"], z["engines"], seed=seed, size_scale=size_scale)
    print("fleet model (%s): %d modules, %d sessions, %d engines" % (
        label, z["modules"], z["sessions"], z["engines"]), flush=True)
    summaries = []
    with open(os.path.join(out, label + ".jsonl"), "w") as f:
        for name in costs["strategies"]:
            t1 = time.time()
            rows, summ = run_strategy(Model(wl, costs), name)
            summaries.append(summ)
            for r in rows:
                f.write(json.dumps(r) + "\n")
            print("  %s: %.0f s" % (name, time.time() - t1), flush=True)
    with open(os.path.join(out, label + "-meta.json"), "w") as f:
        json.dump(dict(sizes=z, seed=seed, size_scale=size_scale, strategies=summaries,
                       wall_s=time.time() - t0, load=" ".join("%.2f" % x for x in os.getloadavg())),
                  f, indent=1)


def reprice(out, label):
    """Price a model run's rows again with the costs.json in out (the counts
    do not depend on the costs: a large run can go while the real one does)."""
    costs = json.load(open(os.path.join(out, "costs.json")))
    M = Model.__new__(Model)
    M.costs = costs
    p = os.path.join(out, label + ".jsonl")
    rows = [json.loads(l) for l in open(p)]
    for r in rows:
        for ph in ("startup", "build", "shutdown"):
            f = {k: v for k, v in r[ph].items() if k in ("calls", "bytes", "meta", "objects",
                                                          "members", "local", "lookups",
                                                          "built", "built_bytes")}
            r[ph]["s"] = M.price(r["strategy"], ph, f)
    with open(p + ".tmp", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    os.rename(p + ".tmp", p)
    mp = os.path.join(out, label + "-meta.json")
    meta = json.load(open(mp))
    for s in meta["strategies"]:
        s["background_s"] = costs["strategies"][s["strategy"]]["background"]["per_op_s"] * \
            s["background_ops"]
    meta["costs_from"] = costs["source"]
    with open(mp, "w") as f:
        json.dump(meta, f, indent=1)
