"""The fleet's workload: modules, their dependency graph, build steps and
their cache keys, output objects, and sessions arriving over time on engines.

Everything here is a pure function of the seed and the sizes, shared by the
real run (fleet.py real) and the model (fleet.py model), so both see the same
kind of workload.

- Modules are numbered in a topological order: module i depends only on
  modules below i. Dependencies are drawn by preferential attachment, so a few
  low-numbered modules have many dependents and most modules are leaves.
- A module has 2 to 5 build steps. Step 0 ("install dependencies") is keyed by
  the module's lock version and its direct dependencies' final keys; step j>0
  by step j-1's key and the module's source version, as a build engine chains
  its cache keys. So a source change invalidates steps 1.., a lock change or
  any change below invalidates all of them.
- Steps 0..s-2 produce a snapshot (several files, mostly small), the last a
  blob (the artifact: sizes lognormal, a few large). An output's bytes are a
  function of its key, so one key gives one digest everywhere.
- Sessions arrive as a Poisson process; each picks a module (leaves and hubs
  alike, uniformly), bumps its source version with probability p_src and its
  lock version with probability p_lock (the repository moved since), runs on
  the engine free soonest, for a duration drawn around session_minutes.
"""
import bisect
import hashlib
import heapq
import math
import random


def h(*parts):
    return hashlib.sha256("\0".join(str(p) for p in parts).encode()).hexdigest()


class Workload:
    def __init__(self, modules, sessions, engines, seed=1, p_src=0.3, p_lock=0.04,
                 session_minutes=20.0, size_scale=1.0):
        self.n_modules, self.n_sessions, self.n_engines = modules, sessions, engines
        self.seed, self.p_src, self.p_lock = seed, p_src, p_lock
        self.size_scale = size_scale
        rnd = random.Random(seed)
        self.deps = [[] for _ in range(modules)]
        self.steps = []
        indeg = [0] * modules
        for i in range(modules):
            self.steps.append(rnd.randint(2, 5))
            if i == 0:
                continue
            want = min(i, rnd.choice([0, 1, 1, 2, 2, 2, 3, 3, 4]))
            # preferential attachment: weight 1 + 3 * dependents, bounded scan
            cand = list(range(i)) if i <= 400 else rnd.sample(range(i), 400)
            w = [1 + 3 * indeg[c] for c in cand]
            chosen = set()
            while len(chosen) < want:
                chosen.add(rnd.choices(cand, weights=w)[0])
            self.deps[i] = sorted(chosen)
            for c in chosen:
                indeg[c] += 1
        self.dependents = indeg
        self._closure = {}
        # sessions: arrival, module, engine, start, end (simulated seconds)
        rate = engines * 0.8 / (session_minutes * 60.0)  # engines ~80% busy
        t = 0.0
        free = [(0.0, e) for e in range(engines)]
        heapq.heapify(free)
        self.sessions = []
        for sid in range(sessions):
            t += rnd.expovariate(rate)
            m = rnd.randrange(modules)
            src = rnd.random() < p_src
            lock = rnd.random() < p_lock
            ft, e = heapq.heappop(free)
            start = max(t, ft)
            dur = session_minutes * 60.0 * rnd.uniform(0.5, 1.5)
            end = start + dur
            heapq.heappush(free, (end, e))
            self.sessions.append(dict(sid=sid, module=m, engine=e, start=start, end=end,
                                      bump_src=src, bump_lock=lock))
        self.sessions.sort(key=lambda s: s["start"])

    # -- closures and keys ------------------------------------------------------
    def closure(self, m):
        """m's transitive dependencies, m excluded, sorted (memoised)."""
        c = self._closure.get(m)
        if c is None:
            c = self._closure[m] = self._walk(m)
        return list(c)

    def _walk(self, m):
        seen, todo = set(), list(self.deps[m])
        while todo:
            d = todo.pop()
            if d not in seen:
                seen.add(d)
                todo.extend(self.deps[d])
        return sorted(seen)

    def events(self):
        """('start'|'end', session) in simulated time order; versions as of each start."""
        ev = []
        for s in self.sessions:
            ev.append((s["start"], 1, s["sid"], "start", s))
            ev.append((s["end"], 0, s["sid"], "end", s))
        ev.sort(key=lambda x: (x[0], x[1], x[2]))
        return [(kind, s) for _, _, _, kind, s in ev]


class Versions:
    """The repository's current versions (source, lock) of every module; keys
    computed from them, memoised per version vector change."""

    def __init__(self, wl):
        self.wl = wl
        self.src = [0] * wl.n_modules
        self.lock = [0] * wl.n_modules
        self._final, self._keys = {}, {}
        self.rdeps = [[] for _ in range(wl.n_modules)]
        for m, ds in enumerate(wl.deps):
            for d in ds:
                self.rdeps[d].append(m)

    def bump(self, s):
        m = s["module"]
        if s["bump_src"]:
            self.src[m] += 1
        if s["bump_lock"]:
            self.lock[m] += 1
        if s["bump_src"] or s["bump_lock"]:
            # the keys of m and of every module above it change
            todo, seen = [m], set()
            while todo:
                x = todo.pop()
                if x in seen:
                    continue
                seen.add(x)
                self._final.pop(x, None)
                self._keys.pop(x, None)
                todo.extend(self.rdeps[x])

    def keys(self, m):
        """The cache keys of m's steps, in order (hex, no prefix; memoised)."""
        ks = self._keys.get(m)
        if ks is None:
            k0 = h("step0", m, self.lock[m], *[self.final(d) for d in self.wl.deps[m]])
            ks = [k0]
            for j in range(1, self.wl.steps[m]):
                ks.append(h("step", j, ks[-1], self.src[m]))
            self._keys[m] = ks
        return list(ks)

    def final(self, m):
        f = self._final.get(m)
        if f is None:
            # iterative over dependencies (deep graphs at scale)
            stack = [m]
            while stack:
                x = stack[-1]
                pend = [d for d in self.wl.deps[x] if d not in self._final]
                if pend:
                    stack.extend(pend)
                    continue
                stack.pop()
                if x not in self._final:
                    self._final[x] = self.keys(x)[-1]
            f = self._final[m]
        return f


def outputs(wl, m, j, key):
    """The output of step j of module m under key: ('snapshot', [(name, size)])
    or ('blob', [(name, size)]). Sizes: many small, a few large."""
    rnd = random.Random(int(key[:16], 16))
    sc = wl.size_scale
    last = j == wl.steps[m] - 1
    if last:
        # an artifact: lognormal around 64 KiB, one in ten a big one (1-6 MiB)
        if rnd.random() < 0.1:
            size = int(rnd.uniform(1, 6) * 1048576 * sc)
        else:
            size = int(min(4 << 20, rnd.lognormvariate(math.log(64 << 10), 1.0)) * sc)
        return "blob", [("artifact", max(1, size))]
    n = 1 + int(rnd.expovariate(1 / 6.0))  # ~7 files
    files = []
    for i in range(min(n, 40)):
        size = int(min(1 << 20, rnd.lognormvariate(math.log(2048), 1.5)) * sc)
        files.append(("f%02d" % i, max(1, size)))
    return "snapshot", files


def file_bytes(key, name, size):
    """The bytes of one output file, a function of the key and name: three
    fifths random, the rest repetitive text (compresses about as a build's
    outputs do, 1.5 to 2 times)."""
    rnd = random.Random(hashlib.sha256((key + "/" + name).encode()).digest())
    n = size * 3 // 5
    text = (b"%s %s\n" % (key[:12].encode(), name.encode())) * (size // 20 + 1)
    return (rnd.randbytes(n) + text)[:size]
