"""Per-strategy costs fitted from the real run (real.jsonl), for the model.

Each phase of a session (startup, build, shutdown) of each strategy is fitted
as a sum of non-negative costs of what it did:

  startup, shutdown: t = c_one + c_calls*calls + c_bytes*bytes + c_meta*meta
                         + c_objects*objects + c_members*members + c_local*local
  build:             t = c_one + c_lookups*lookups + c_built*built
                         + c_built_bytes*built_bytes

calls: processes run (cairn, tar); bytes: data moved to or from the remote
(what push/pull/checkin --json say they sent or fetched; a tar's size; the
growth of the pool's host cache); meta: metadata bytes moved (the state
databases); objects: objects moved; members: remote states read; local: the
bytes of the session's state (pulled and built: what shutdown drops).

Beside them, the quantities the model needs that are not times:
- db_bytes = a + b*records: a pushed database's size by its records, from
  the pool's check-ins (meta_bytes against the steps the session built);
- push_ratio: bytes a push sends per raw byte of the objects the remote
  lacks (snapshots go compressed), from the check-ins;
- background: seconds per background operation (remote gc, compaction).
"""
import json
import os

import numpy as np

PHASE_FEATURES = {
    "startup": ["one", "calls", "bytes", "meta", "objects", "members"],
    "shutdown": ["one", "calls", "bytes", "meta", "objects", "members", "local"],
    "build": ["one", "lookups", "built", "built_bytes"],
}


def features(row, phase):
    if phase == "build":
        b = row["build"]
        return dict(one=1.0, lookups=b["lookups"], built=b["built"],
                    built_bytes=b["built_bytes"]), b["s"]
    p = dict(row[phase])
    p["one"] = 1.0
    p["local"] = row["startup"]["bytes"] + row["build"]["built_bytes"]
    return p, p["s"]


def nnls(X, y):
    """Least squares with non-negative coefficients (active set, small)."""
    active = list(range(X.shape[1]))
    while True:
        if not active:
            return np.zeros(X.shape[1])
        coef, *_ = np.linalg.lstsq(X[:, active], y, rcond=None)
        if (coef >= 0).all():
            out = np.zeros(X.shape[1])
            out[active] = coef
            return out
        active.pop(int(np.argmin(coef)))


def fit_phase(rows, phase):
    names = PHASE_FEATURES[phase]
    X, y = [], []
    for r in rows:
        f, t = features(r, phase)
        X.append([float(f.get(n, 0)) for n in names])
        y.append(t)
    X, y = np.array(X), np.array(y)
    # scale columns so the solver sees comparable magnitudes
    scale = np.where(X.max(axis=0) > 0, X.max(axis=0), 1.0)
    coef = nnls(X / scale, y) / scale
    pred = X @ coef
    ss = ((y - y.mean()) ** 2).sum()
    r2 = 1 - ((y - pred) ** 2).sum() / ss if ss > 0 else 1.0
    return dict(coef={n: float(c) for n, c in zip(names, coef)}, r2=float(r2), n=len(y),
                mean_s=float(y.mean()), mean_pred_s=float(pred.mean()))


def fit(out):
    rows = [json.loads(l) for l in open(os.path.join(out, "real.jsonl"))]
    meta = json.load(open(os.path.join(out, "real-meta.json")))
    res = dict(source="real.jsonl of %s: %d sessions a strategy, load %s -> %s" % (
        meta["started"], meta["sizes"]["sessions"], meta["load_before"], meta["load_after"]),
        sizes=meta["sizes"], strategies={})
    for name in sorted({r["strategy"] for r in rows}):
        rs = [r for r in rows if r["strategy"] == name]
        res["strategies"][name] = {ph: fit_phase(rs, ph) for ph in PHASE_FEATURES}
        summ = next((s for s in meta["strategies"] if s["strategy"] == name), {})
        n_bg = summ.get("background_calls", 0)
        res["strategies"][name]["background"] = dict(
            per_op_s=summ.get("background_s", 0) / n_bg if n_bg else 0.0, ops=n_bg)
    # the database's size by records, and the bytes a push sends per byte built,
    # from the pool's check-ins (the delta alone: records = steps built)
    ck = [r for r in rows if r["strategy"] == "cairn" and r["build"]["built"] > 0
          and r["shutdown"]["meta"] > 0]
    if len(ck) >= 2:
        x = np.array([r["build"]["built"] for r in ck], float)
        y = np.array([r["shutdown"]["meta"] for r in ck], float)
        b, a = np.polyfit(x, y, 1)
        res["db_bytes"] = dict(a=float(a), b=float(max(b, 0)), n=len(ck),
                               source="cairn check-ins: meta_bytes against steps built")
        # bytes sent per raw byte of the objects the remote did not have yet
        # (check-ins in the order they ended; an object is new the first time)
        seen, sent, raw = set(), 0, 0
        for r in ck:
            new = [(k, n) for k, n in r["build"].get("built_keys", []) if k not in seen]
            if r["shutdown"]["objects"] == len(new):  # the count agrees: the bytes compare
                sent += r["shutdown"]["bytes"]
                raw += sum(n for _, n in new)
            seen.update(k for k, _ in new)
        res["push_ratio"] = dict(value=sent / raw if raw else 1.0, n=len(ck),
                                 source="cairn check-ins: bytes sent per raw byte of the "
                                        "objects new to the remote")
    else:
        res["db_bytes"] = dict(a=95000.0, b=300.0, n=0, source="default (no check-ins)")
        res["push_ratio"] = dict(value=1.0, n=0, source="default (no check-ins)")
    with open(os.path.join(out, "costs.json"), "w") as f:
        json.dump(res, f, indent=1)
    for name, s in res["strategies"].items():
        print("costs %-7s " % name + "  ".join(
            "%s R2 %.2f" % (ph, s[ph]["r2"]) for ph in PHASE_FEATURES))
    return res
