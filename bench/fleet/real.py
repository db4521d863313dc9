"""The real run: every session runs the cairn command against a remote on this
machine, one state directory a session (an engine's), one strategy at a time.

Sessions are played in simulated time order: at a session's start event it
provisions its state and runs its build steps (with the versions the
repository has then); at its end event it shuts down. Sessions that overlap
in simulated time overlap in the remote too (another's check-in between this
one's start and end is seen, or overwritten, as it would be), though the
commands run one after another, each timed by itself.

Strategies (each against a remote of its own, so bytes stored are its own):
- cold: a fresh state, nothing shared; shutdown drops it.
- export: the module's single cache in the backend (a tag with one member):
  startup pulls the module's and its direct dependencies'; shutdown pushes
  the cache of the session's build graph (the keys of the module and its
  dependencies as of its start: what it pulled of older versions is dropped
  first) under the module's tag and drops the members
  that were there before (last writer wins, as BuildKit's --cache-to
  mode=max overwrites a ref). Orphaned objects are collected in the
  background (remote gc, no policy) every gc_every sessions.
- save: the whole state directory copied out at shutdown (frozen, one tar in
  the backend's saves/MODULE/, the newest `keep` kept per module); startup
  copies in the newest `keep` saves of the module and the newest of each
  direct dependency and merges them.
- cairn: the pool: startup stacks a fresh top over frozen states of the
  module and its direct dependencies from the engine's host cache (pulled
  only when the remote has states the cache has not seen); shutdown checks in
  the top alone (push --own), nothing when the session built nothing;
  compaction in the background when a module has more than compact_at
  states. With the `cairn pool` commands when the binary has them, else the
  same built from freeze, stack add, pull, push --own and remote compact.
"""
import json
import os
import shutil
import subprocess
import time

from workload import Versions, file_bytes, outputs


class CairnError(RuntimeError):
    pass


CAIRN = "cairn"  # the binary's path, set by Runner


class Runner:
    """Runs commands, counting calls."""

    def __init__(self, cairn):
        global CAIRN
        CAIRN = cairn
        self.calls = 0

    def done(self, argv, p, check):
        self.calls += 1
        if check and p.returncode != 0:
            raise CairnError("%s: exit %d: %s" % (" ".join(argv), p.returncode,
                                                  p.stderr.decode(errors="replace").strip()))
        return p.returncode, p.stdout.decode()

    def tar(self, *args):
        p = subprocess.run(["tar"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return self.done(["tar"] + list(args), p, True)

    def c(self, *args, state=None, check=True, env=None):
        argv = ["-q"] + (["-C", state] if state else []) + list(args)
        p = subprocess.run([CAIRN] + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=dict(os.environ, **env) if env else None)
        return self.done(["cairn"] + argv, p, check)

    def cj(self, *args, state=None, env=None):
        _, out = self.c("--json", *args, state=state, env=env)
        return json.loads(out) if out.strip() else {}


def tree_bytes(path):
    """Bytes of the regular files under path, each inode once."""
    seen, total = set(), 0
    for root, dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(root, f))
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def rmtree(p):
    shutil.rmtree(p, ignore_errors=True)


class Phase:
    """Counts what one phase of a session did."""

    def __init__(self, r):
        self.r = r
        self.c0 = r.calls
        self.t0 = time.perf_counter()
        self.bytes = self.objects = self.meta = self.members = 0

    def moved(self, j):
        self.bytes += j.get("bytes_moved", 0)
        self.objects += j.get("objects_moved", 0)
        self.meta += j.get("meta_bytes", 0)

    timed = None  # seconds, when the phase also ran a measurement of the harness

    def done(self):
        t = time.perf_counter() - self.t0 if self.timed is None else self.timed
        return dict(s=t, calls=self.r.calls - self.c0,
                    bytes=self.bytes, objects=self.objects, meta=self.meta, members=self.members)


class Strategy:
    name = "?"

    def __init__(self, r, wl, root, url):
        self.r, self.wl, self.root, self.url = r, wl, root, url
        self.remote_dir = url[len("file://"):]
        os.makedirs(self.remote_dir, exist_ok=True)
        self.background_s = 0.0
        self.background_calls = 0

    def states_of(self, tag):
        j = self.r.cj("remote", "states", self.url, tag)
        return [s["digest"] for s in j.get("states", []) if s.get("tag") == tag]

    def background(self, *cmd):
        t0, c0 = time.perf_counter(), self.r.calls
        self.r.c(*cmd)
        self.background_s += time.perf_counter() - t0
        self.background_calls += self.r.calls - c0

    def finish(self):
        pass


class Cold(Strategy):
    name = "cold"

    def startup(self, s, st, ph):
        self.r.c("init", st)

    def shutdown(self, s, st, ph):
        rmtree(st)


class Export(Strategy):
    name = "export"
    gc_every = 25

    def __init__(self, *a):
        super().__init__(*a)
        self.n = 0

    def startup(self, s, st, ph):
        self.r.c("init", st)
        m = s["module"]
        for x in [m] + self.wl.deps[m]:
            members = self.states_of(str(x))
            if members:
                ph.members += len(members)
                ph.moved(self.r.cj("pull", self.url, str(x), state=st))

    def shutdown(self, s, st, ph):
        tag = str(s["module"])
        # export this build's graph only (its keys as of its start, present):
        # what else the state pulled (older versions) is not exported
        keys = {r["key"] for r in self.r.cj("record", "ls", state=st)}
        drop = sorted(keys - {"sha256:" + k for k in s["graph"]})
        if drop:
            self.r.c("record", "rm", *drop, state=st)
            self.r.c("gc", "--grace", "0s", state=st)
        old = self.states_of(tag)
        j = self.r.cj("push", self.url, tag, state=st)
        ph.moved(j)
        new = j["digest"].split(":", 1)[1]
        for d in old:  # the ref overwritten: the last writer wins
            hexd = d.split(":", 1)[1]
            if hexd != new:
                os.unlink(os.path.join(self.remote_dir, "states", tag, hexd))
        rmtree(st)
        self.n += 1
        if self.n % self.gc_every == 0:
            self.background("remote", "gc", "--grace", "0s", self.url)

    def finish(self):
        self.background("remote", "gc", "--grace", "0s", self.url)


class Save(Strategy):
    name = "save"
    keep = 2

    def saves(self, m):
        d = os.path.join(self.remote_dir, "saves", str(m))
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def startup(self, s, st, ph):
        m = s["module"]
        picks = [(m, n) for n in self.saves(m)[-self.keep:]]
        for d in self.wl.deps[m]:
            picks += [(d, n) for n in self.saves(d)[-1:]]
        if not picks:
            self.r.c("init", st)
            return
        srcs = []
        for i, (x, n) in enumerate(picks):
            tar = os.path.join(self.remote_dir, "saves", str(x), n)
            dst = st + ".in%d" % i
            os.makedirs(dst)
            ph.bytes += os.path.getsize(tar)
            ph.members += 1
            self.r.tar("-xf", tar, "-C", dst)
            srcs.append(dst)
        self.r.c("merge", st, *srcs)
        for d in srcs:
            rmtree(d)

    def shutdown(self, s, st, ph):
        m = str(s["module"])
        frozen = st + ".frozen"
        self.r.c("freeze", st, frozen)
        d = os.path.join(self.remote_dir, "saves", m)
        os.makedirs(d, exist_ok=True)
        name = "%012d-%06d.tar" % (int(s["end"]), s["sid"])
        tmp = os.path.join(d, "." + name)
        self.r.tar("-cf", tmp, "-C", frozen, ".")
        os.rename(tmp, os.path.join(d, name))
        ph.bytes += os.path.getsize(os.path.join(d, name))
        ph.objects += 1
        for old in self.saves(m)[:-self.keep]:  # retention: the newest `keep`
            os.unlink(os.path.join(d, old))
        rmtree(st)
        rmtree(frozen)


class CairnPool(Strategy):
    """The pool, built from the commands there are (until `cairn pool` lands)."""
    name = "cairn"
    compact_at = 4

    def __init__(self, *a):
        super().__init__(*a)
        self.host = {}  # (engine, module) -> dict(pulled=set, gen=n, frozen=path)
        self.users = {}  # frozen path -> sessions using it
        self.lowers_of = {}

    def hostdir(self, e, x):
        return os.path.join(self.root, "hosts", str(e), str(x))

    def startup(self, s, st, ph):
        m, e = s["module"], s["engine"]
        lowers = []
        for x in [m] + self.wl.deps[m]:
            members = self.states_of(str(x))
            hc = self.host.setdefault((e, x), dict(pulled=set(), gen=0, frozen=None))
            if members and set(members) != hc["pulled"]:
                live = os.path.join(self.hostdir(e, x), "live")
                if not os.path.exists(live):
                    self.r.c("init", live)
                ph.members += len(members)
                ph.moved(self.r.cj("pull", self.url, str(x), state=live))
                hc["gen"] += 1
                frozen = os.path.join(self.hostdir(e, x), "g%d" % hc["gen"])
                self.r.c("freeze", live, frozen)
                old, hc["frozen"], hc["pulled"] = hc["frozen"], frozen, set(members)
                if old and not self.users.get(old):
                    rmtree(old)
            if hc["frozen"]:
                lowers.append(hc["frozen"])
        self.r.c("init", st)
        if lowers:
            self.r.c("stack", "add", st, *lowers)
        for f in lowers:
            self.users[f] = self.users.get(f, 0) + 1
        self.lowers_of[s["sid"]] = lowers

    def shutdown(self, s, st, ph):
        tag = str(s["module"])
        if s.get("built", 0):
            ph.moved(self.r.cj("push", "--own", self.url, tag, state=st))
        rmtree(st)
        for f in self.lowers_of.pop(s["sid"]):
            self.users[f] -= 1
            current = any(hc["frozen"] == f for hc in self.host.values())
            if not self.users[f] and not current:
                rmtree(f)
        if s.get("built", 0) and len(self.states_of(tag)) > self.compact_at:
            self.background("remote", "compact", self.url, tag)


class PoolCli(Strategy):
    """The pool through `cairn pool` (branch pool): provision --mode stack
    with the engine's host cache (--cache), checkin, lease release, and
    pool compact of a module every compact_at check-ins, in the background.
    Bytes fetched at startup: the growth of the host cache (provision's
    --json says which members it fetched, not their bytes)."""
    name = "cairn"
    compact_at = 4

    def __init__(self, *a):
        super().__init__(*a)
        self.r.c("pool", "init", self.url)
        self.checkins = {}
        # simulated hours pass in wall minutes: the folded members retire at
        # once, not after compact's default grace of an hour (when it has one)
        _, out = self.r.c("pool", "compact", "--help")
        self.compact_args = ["--grace", "0s"] if "--grace" in out else []

    def env(self, e):
        # the host cache of engine e (provision's --cache; checkin and lease
        # find the provision there too, and take it from the environment only)
        return {"CAIRN_POOL_CACHE": os.path.join(self.root, "hosts", str(e))}

    def startup(self, s, st, ph):
        m, e = s["module"], s["engine"]
        cache = self.env(e)["CAIRN_POOL_CACHE"]
        argv = ["pool", "provision", "--mode", "stack"]
        for d in self.wl.deps[m]:
            argv += ["--dep", str(d)]
        before = tree_bytes(cache) if os.path.isdir(cache) else 0
        t0 = time.perf_counter()
        j = self.r.cj(*(argv + [self.url, str(m), st]), env=self.env(e))
        ph.timed = time.perf_counter() - t0  # the tree walk below is the harness's
        ph.bytes += tree_bytes(cache) - before
        ph.objects += j.get("fetched", 0)
        ph.members += len(j.get("stack", []))

    def shutdown(self, s, st, ph):
        tag = str(s["module"])
        if s.get("built", 0):
            j = self.r.cj("pool", "checkin", self.url, tag, st, env=self.env(s["engine"]))
            ph.bytes += j.get("bytes_sent", 0)
            ph.objects += j.get("objects_sent", 0)
            ph.meta += j.get("meta_bytes", 0)
            self.checkins[tag] = self.checkins.get(tag, 0) + 1
        self.r.c("pool", "lease", "release", self.url, st, env=self.env(s["engine"]))
        rmtree(st)
        if self.checkins.get(tag, 0) >= self.compact_at:
            self.checkins[tag] = 0
            self.background("pool", "compact", *self.compact_args, self.url, tag)


STRATEGIES = {"cold": Cold, "export": Export, "save": Save, "cairn": CairnPool}


def has_pool(r):
    rc, _ = r.c("pool", "provision", "--help", check=False)
    return rc == 0


class Builder:
    """Runs a session's build steps in its state: the final key first (a hit
    means nothing below is needed), else the dependencies, then the steps in
    order, each looked up, and on a miss built and recorded."""

    def __init__(self, r, wl, versions, scratch):
        self.r, self.wl, self.v, self.scratch = r, wl, versions, scratch

    def get(self, st, key):
        self.lookups += 1
        rc, out = self.r.c("record", "get", "sha256:" + key, state=st, check=False)
        if rc == 0:
            self.hits += 1
            kind, res = out.split()[:2]
            return kind, res
        if rc != 1:
            raise CairnError("record get %s: exit %d" % (key, rc))
        return None

    def session(self, s, st):
        self.lookups = self.hits = self.built = self.built_bytes = 0
        self.memo, self.built_keys = set(), []
        t0 = time.perf_counter()
        self.module(st, s["module"])
        cold = sum(self.wl.steps[x] for x in self.wl.closure(s["module"]) + [s["module"]])
        return dict(s=time.perf_counter() - t0, lookups=self.lookups, hits=self.hits,
                    built=self.built, built_bytes=self.built_bytes, cold_steps=cold,
                    built_keys=self.built_keys)

    def module(self, st, m):
        if m in self.memo:
            return
        self.memo.add(m)
        keys = self.v.keys(m)
        if self.get(st, keys[-1]):
            return
        for d in self.wl.deps[m]:
            self.module(st, d)
        parent = None
        for j, k in enumerate(keys):
            hit = self.get(st, k) if j < len(keys) - 1 else None
            if hit:
                parent = hit[1] if hit[0] == "snapshot" else None
                continue
            parent = self.build(st, m, j, k, parent)

    def build(self, st, m, j, key, parent):
        kind, files = outputs(self.wl, m, j, key)
        self.built += 1
        self.built_keys.append([key, sum(sz for _, sz in files)])
        if kind == "blob":
            name, size = files[0]
            p = os.path.join(self.scratch, "artifact")
            with open(p, "wb") as f:
                f.write(file_bytes(key, name, size))
            self.built_bytes += size
            _, out = self.r.c("blob", "put", p, state=st)
            digest = out.split()[0]
            os.unlink(p)
            self.r.c("record", "put", "sha256:" + key, digest, "--kind", "blob", state=st)
            return parent
        argv = ["snapshot", "prepare"] + ([parent] if parent else [])
        _, out = self.r.c(*argv, state=st)
        aid = out.split()[0]
        fs = os.path.join(st, "active", aid, "fs")
        sub = os.path.join(fs, "m%d" % m, "s%d" % j)
        os.makedirs(sub)
        for name, size in files:
            with open(os.path.join(sub, name), "wb") as f:
                f.write(file_bytes(key, name, size))
            self.built_bytes += size
        _, out = self.r.c("snapshot", "commit", aid, state=st)
        chain = out.split()[0]
        self.r.c("record", "put", "sha256:" + key, chain, "--kind", "snapshot", state=st)
        return chain


def run_strategy(name, wl, cairn, root, log=print, pool="auto"):
    """Plays every session of wl under one strategy; returns its rows."""
    rmtree(root)
    os.makedirs(root)
    r = Runner(cairn)
    url = "file://" + os.path.join(root, "remote")
    cls = STRATEGIES[name]
    if name == "cairn" and (pool == "cli" or (pool == "auto" and has_pool(r))):
        cls = PoolCli
    strat = cls(r, wl, root, url)
    versions = Versions(wl)
    scratch = os.path.join(root, "scratch")
    os.makedirs(scratch)
    b = Builder(r, wl, versions, scratch)
    rows, live = [], {}
    t_start = time.perf_counter()
    for kind, s in wl.events():
        sid = s["sid"]
        st = os.path.join(root, "sessions", "s%06d" % sid)
        if kind == "start":
            versions.bump(s)
            s["graph"] = [k for x in wl.closure(s["module"]) + [s["module"]]
                          for k in versions.keys(x)]
            ph = Phase(r)
            strat.startup(s, st, ph)
            up = ph.done()
            bd = b.session(s, st)
            s = dict(s, built=bd["built"])
            live[sid] = (s, up, bd)
        else:
            s, up, bd = live.pop(sid)
            ph = Phase(r)
            strat.shutdown(s, st, ph)
            down = ph.done()
            row = dict(strategy=name, impl=cls.__name__, sid=sid, module=s["module"],
                       engine=s["engine"], start=s["start"], end=s["end"],
                       startup=up, build=bd, shutdown=down,
                       remote_bytes=tree_bytes(strat.remote_dir),
                       background_s=strat.background_s)
            rows.append(row)
            if len(rows) % 25 == 0:
                log("  %s: %d/%d sessions, %.0f s" % (name, len(rows), wl.n_sessions,
                                                      time.perf_counter() - t_start))
    strat.finish()
    summary = dict(strategy=name, impl=cls.__name__, wall_s=time.perf_counter() - t_start,
                   background_s=strat.background_s, background_calls=strat.background_calls,
                   remote_bytes=tree_bytes(strat.remote_dir))
    rmtree(os.path.join(root, "sessions"))
    return rows, summary
