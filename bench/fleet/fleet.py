#!/usr/bin/python3
"""fleet.py: issue 13's fleet simulator: how four ways of sharing a build
engine's cache across a fleet compare (cold, cache export, save the state
directory, cairn's pool). Run by hand, never in the tests.

  fleet.py real   [--quick] [sizes]   the real cairn commands, file:// remote
  fleet.py fit                        per-strategy costs from the real run -> costs.json
  fleet.py model  [sizes]             the large scale: the model, costs from costs.json
  fleet.py report                     table (table.md) and plot (fleet.png)
  fleet.py all    [--quick] [--large] real, fit, model (at the real run's size, to
                                      check it, and with --large at 1,000 engines
                                      and 10,000 modules), report

Results go to --out (default bench/fleet/results/latest). The cairn binary:
$CAIRN, else build/cli/cairn of this checkout. README.md beside this file
says what each strategy does and what is measured.
"""
import argparse
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import workload  # noqa: E402

SIZES = {
    "quick": dict(modules=10, sessions=40, engines=4),
    "small": dict(modules=50, sessions=250, engines=16),
    "large": dict(modules=10000, sessions=50000, engines=1000),
}
ORDER = ["cold", "export", "save", "cairn"]


def loadavg():
    return "%.2f %.2f %.2f" % os.getloadavg()


def cairn_binary():
    c = os.environ.get("CAIRN") or os.path.join(HERE, "..", "..", "build", "cli", "cairn")
    c = os.path.abspath(c)
    if not os.access(c, os.X_OK):
        sys.exit("fleet: no cairn binary at %s (build it, or set CAIRN)" % c)
    return c


def portable(argv):
    """argv as recorded in results: paths in the checkout relative to it, other
    absolute paths by their last component (no path of this machine)."""
    root = os.path.abspath(os.path.join(HERE, "..", ".."))
    out = []
    for a in argv:
        if os.path.isabs(a):
            a = os.path.relpath(a, root) if a.startswith(root + os.sep) else \
                "SCRATCH/" + os.path.basename(a.rstrip("/"))
        out.append(a)
    return out


def version(cairn):
    import subprocess
    CAIRN = cairn
    return subprocess.run([CAIRN, "--version"], stdout=subprocess.PIPE).stdout.decode().strip()


def sizes(args, default):
    z = dict(SIZES["quick" if getattr(args, "quick", False) else default])
    for k in ("modules", "sessions", "engines"):
        if getattr(args, k, None):
            z[k] = getattr(args, k)
    return z


def one_strategy(a):
    """One strategy's real run, in a process of its own (--jobs)."""
    import real
    name, wl, cairn, work, pool = a
    la = loadavg()
    rows, summ = real.run_strategy(name, wl, cairn, os.path.join(work, name),
                                   log=lambda m: print(m, flush=True), pool=pool)
    summ["load_before"], summ["load_after"] = la, loadavg()
    print("  %s done in %.0f s (%s), load %s" % (name, summ["wall_s"], summ["impl"],
                                                  summ["load_after"]), flush=True)
    return rows, summ


def cmd_real(args):
    import real
    z = sizes(args, "small")
    wl = workload.Workload(z["modules"], z["sessions"], z["engines"], seed=args.seed,
                           size_scale=args.size_scale)
    os.makedirs(args.out, exist_ok=True)
    work = args.work or os.path.join(args.out, "work")
    cairn = cairn_binary()
    meta = dict(sizes=z, seed=args.seed, size_scale=args.size_scale, argv=portable(sys.argv),
                load_before=loadavg(), started=time.strftime("%Y-%m-%d %H:%M:%S"),
                cpus=os.cpu_count(), python=platform.python_version(),
                cairn_version=version(cairn),
                dependents_max=max(wl.dependents),
                leaves=sum(1 for x in wl.dependents if x == 0))
    print("fleet real: %(modules)d modules, %(sessions)d sessions, %(engines)d engines" % z,
          "load", meta["load_before"], flush=True)
    names = args.strategies.split(",")

    meta["jobs"] = args.jobs
    if args.jobs > 1:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(max_workers=args.jobs) as ex:
            results = list(ex.map(one_strategy, [(n, wl, cairn, work, args.pool) for n in names]))
    else:
        results = [one_strategy((n, wl, cairn, work, args.pool)) for n in names]
    summaries = []
    with open(os.path.join(args.out, "real.jsonl"), "w") as f:
        for rows, summ in results:
            summaries.append(summ)
            for row in rows:
                f.write(json.dumps(row) + "\n")
    meta["load_after"] = loadavg()
    meta["strategies"] = summaries
    with open(os.path.join(args.out, "real-meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    if not args.keep_work:
        real.rmtree(work)


def cmd_fit(args):
    import costs
    costs.fit(args.out)


def cmd_model(args):
    import model
    if args.reprice:
        model.reprice(args.out, args.label)
        return
    z = sizes(args, "large")
    model.run(args.out, z, seed=args.seed, size_scale=args.size_scale, label=args.label)


def cmd_report(args):
    import report
    report.report(args.out)


def cmd_all(args):
    t0 = time.time()
    try:  # what fit, model and report need, before the real run's hour, not after
        import numpy  # noqa: F401
        import matplotlib  # noqa: F401
    except ImportError as e:
        sys.exit("fleet: %s (python3-numpy, python3-matplotlib: scripts/deps, group bench; "
                 "this python is %s)" % (e, sys.executable))
    cmd_real(args)
    cmd_fit(args)
    small = argparse.Namespace(**vars(args))
    small.label = "model-small"
    for k, v in sizes(args, "small").items():
        setattr(small, k, v)
    cmd_model(small)
    if args.large:
        big = argparse.Namespace(**vars(args))
        big.label, big.quick = "model-large", False
        for k, v in SIZES["large"].items():
            setattr(big, k, getattr(args, "large_" + k, None) or v)
        cmd_model(big)
    cmd_report(args)
    print("fleet: all done in %.0f s, load %s" % (time.time() - t0, loadavg()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, fn in [("real", cmd_real), ("fit", cmd_fit), ("model", cmd_model),
                     ("report", cmd_report), ("all", cmd_all)]:
        p = sub.add_parser(name)
        p.set_defaults(fn=fn)
        p.add_argument("--out", default=os.path.join(HERE, "results", "latest"))
        p.add_argument("--seed", type=int, default=1)
        p.add_argument("--size-scale", type=float, default=1.0,
                       help="multiply every object's size (default 1)")
        p.add_argument("--quick", action="store_true",
                       help="10 modules, 40 sessions, 4 engines")
        p.add_argument("--modules", type=int)
        p.add_argument("--sessions", type=int)
        p.add_argument("--engines", type=int)
        p.add_argument("--label", default="model-large")
        p.add_argument("--strategies", default=",".join(ORDER))
        p.add_argument("--pool", choices=["auto", "cli", "emulate"], default="auto",
                       help="cairn strategy: the `cairn pool` commands (cli), or built "
                            "from push/pull/freeze/stack (emulate); auto: cli when the "
                            "binary has them")
        p.add_argument("--jobs", type=int, default=1,
                       help="real: strategies run at once, each in a process (default 1)")
        p.add_argument("--work", help="scratch directory (default OUT/work)")
        p.add_argument("--keep-work", action="store_true")
        p.add_argument("--large", action="store_true",
                       help="all: the model at 1,000 engines and 10,000 modules too")
        p.add_argument("--large-sessions", type=int)
        p.add_argument("--reprice", action="store_true",
                       help="model: price the rows of --label again with OUT/costs.json")
    args = ap.parse_args()
    args.out = os.path.abspath(args.out)
    args.fn(args)


if __name__ == "__main__":
    main()
