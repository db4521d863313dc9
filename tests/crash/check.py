#!/usr/bin/env python3
"""check.py: look at states after a crash, for crash.sh and soak.sh.

  check.py CAIRN [--inv FILE] [--fsck lenient|strict] [--verify FILE] [--gc] STATE...
  check.py CAIRN --serve

--serve        read requests from standard input, one a line: the directory to
               work in, then the arguments above, separated by tabs; answer
               each with its output and a line "<<END>>". A driver that checks
               hundreds of runs keeps one of these (starting Python costs more
               than the cairn commands it runs).

--inv FILE     write the inventory of every STATE to FILE, one sorted line an
               object: "<state> blob <digest> <size>", "<state> snap <chain>
               <parent> <diff_id>", "<state> active <id>", "<state> image
               <name> <manifest> <top>", "<state> record <key> <kind>
               <result>", "<state> volume <name> <current>", "<state> version
               <name> <version>", "<state> lease <id>", "<state> leaseres <id>
               <kind> <name>", and "<state> state" for a state; a STATE that is not there is "<state> absent",
               a directory without an identity "<state> nostate". Times and
               counters are left out: they change on every run.
--fsck MODE    run `cairn fsck` (full hash) on every STATE that is a state:
               lenient lets through what a crash may leave (DESIGN.md): an
               "unreferenced" object, which gc removes, and an "interrupted"
               commit, an active row whose diff is in snapshots/ under the name
               its intent file gives (lib/snapshot/snapshot.c), which a rerun of
               the commit finishes (crash.sh checks that it does); strict lets
               nothing through.
--verify FILE  read back with `blob get --verify` the blobs named by lines
               "<state> blob <digest> ..." of FILE (an earlier inventory) whose
               state is among STATE (--verify-max N: the first N only).
--gc           first run `gc --grace 0` on every writable STATE, after making
               what fsck reports unreferenced and what tmp/ holds an hour old
               (so that no object is spared for being of this second);
               afterwards, tmp/ of each must be empty (no staging of a dead
               process left).

Prints one line a problem, "CLASS: detail" (classes fsck, lost, gc, staging),
and exits 0; exit 2 on a bad command line.
"""
import concurrent.futures
import json
import os
import subprocess
import sys

POOL = concurrent.futures.ThreadPoolExecutor(max_workers=4)

TIMEOUT = 300


def run(CAIRN, args, discard=False):  # (the name tells tests/cli/deps-check.py it is ours)
    try:
        p = subprocess.run([CAIRN] + args, stdout=subprocess.DEVNULL if discard else subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return 124, "", "timed out after %d s" % TIMEOUT
    return p.returncode, p.stdout, p.stderr


def is_state(path):
    return os.path.isfile(os.path.join(path, "cairn-state"))


def ls_json(cairn, state, args, lines, label):
    rc, out, err = run(cairn, ["-C", state, "--json"] + args)
    if rc != 0:
        lines.append("%s error %s: %s" % (label, " ".join(args), err.strip().splitlines()[-1:] or rc))
        return []
    try:
        return json.loads(out)
    except ValueError:
        lines.append("%s error %s: not JSON" % (label, " ".join(args)))
        return []


def inventory(cairn, state):
    label = state
    if not os.path.lexists(state):
        return ["%s absent" % label]
    if not is_state(state):
        return ["%s nostate" % label]
    lines = ["%s state" % label]
    kinds = ["blob", "snapshot", "active", "image", "record", "volume", "lease"]
    argv = {"blob": ["blob", "ls"], "snapshot": ["snapshot", "ls"],
            "active": ["snapshot", "ls", "--active"], "image": ["image", "ls"],
            "record": ["record", "ls"], "volume": ["volume", "ls"], "lease": ["lease", "ls"]}
    # The listings at once: each is a process that mostly waits.
    got = dict(zip(kinds, POOL.map(lambda k: ls_json(cairn, state, argv[k], lines, label), kinds)))
    for b in got["blob"]:
        lines.append("%s blob %s %s" % (label, b["digest"], b["size"]))
    for s in got["snapshot"]:
        lines.append("%s snap %s %s %s" % (label, s["chain_id"], s["parent"] or "-", s["diff_id"]))
    for a in got["active"]:
        lines.append("%s %s %s" % (label, a["kind"], a["id"]))
    for i in got["image"]:
        lines.append("%s image %s %s %s" % (label, i.get("name"), i.get("manifest"), i.get("top")))
    for r in got["record"]:
        lines.append("%s record %s %s %s" % (label, r["key"], r["kind"], r["result"]))
    for v in got["volume"]:
        lines.append("%s volume %s %s" % (label, v["name"], v["current"]))
        for ver in ls_json(cairn, state, ["volume", "versions", v["name"]], lines, label):
            lines.append("%s version %s %s" % (label, v["name"], ver["version"]))
    for le in got["lease"]:
        lines.append("%s lease %s" % (label, le["id"]))
        for res in le.get("resources", []):
            lines.append("%s leaseres %s %s %s" % (label, le["id"], res["kind"], res["name"]))
    return lines


def fsck(cairn, state, strict, problems):
    if not is_state(state):
        return
    rc, out, err = run(cairn, ["-C", state, "fsck", "--json"])
    if rc not in (0, 3):
        problems.append("fsck: %s: fsck exit %d: %s" % (state, rc, err.strip()))
        return
    try:
        found = json.loads(out)["problems"]
    except (ValueError, KeyError):
        problems.append("fsck: %s: fsck printed no JSON: %s" % (state, err.strip()))
        return
    for p in found:
        if not strict and p.get("problem") in ("unreferenced", "interrupted"):
            continue
        problems.append("fsck: %s: %s %s: %s: %s" % (state, p.get("kind"), p.get("name"),
                                                    p.get("problem"), p.get("detail")))


def backdate(cairn, state):
    """Make what a crash left look an hour old: gc --grace 0 spares an object
    of this very second, and the check must not depend on the clock. Only
    what fsck reports unreferenced (by the path it names) and the entries of
    tmp/ are touched, never an object a row names."""
    old = os.path.getmtime(state) - 3600
    rc, out, _ = run(cairn, ["-C", state, "fsck", "--json", "--no-hash"])
    paths = []
    try:
        for p in json.loads(out)["problems"]:
            if p.get("problem") == "unreferenced" and p.get("detail", "").startswith("/"):
                paths.append(p["detail"].split(" ")[0])
    except (ValueError, KeyError):
        pass
    tmp = os.path.join(state, "tmp")
    if os.path.isdir(tmp):
        paths += [os.path.join(tmp, n) for n in os.listdir(tmp)]
    for p in paths:
        try:
            os.utime(p, (old, old), follow_symlinks=False)
        except OSError:
            pass


def frozen(cairn, state):
    rc, out, _ = run(cairn, ["-C", state, "info", "--json"])
    try:
        return rc == 0 and json.loads(out).get("frozen", False)
    except ValueError:
        return False


def serve(cairn):
    for line in sys.stdin:
        f = line.rstrip("\n").split("\t")
        try:
            os.chdir(f[0])
            check(cairn, f[1:])
        except Exception as e:  # a broken request must not stop the driver
            print("check: %s: %s" % (type(e).__name__, e))
        print("<<END>>", flush=True)
    return 0


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    if argv[2:] == ["--serve"]:
        return serve(argv[1])
    return check(argv[1], argv[2:])


def check(cairn, args):
    inv = fsck_mode = verify = None
    verify_max = 1 << 30
    gc = False
    states = []
    it = iter(args)
    for a in it:
        if a == "--inv":
            inv = next(it)
        elif a == "--fsck":
            fsck_mode = next(it)
        elif a == "--verify":
            verify = next(it)
        elif a == "--verify-max":
            verify_max = int(next(it))
        elif a == "--gc":
            gc = True
        elif a.startswith("--"):
            print("check: unknown option %s" % a)
            return 2
        else:
            states.append(a)
    problems = []
    if gc:
        for s in states:
            if not is_state(s) or frozen(cairn, s):
                continue
            backdate(cairn, s)
            rc, _, err = run(cairn, ["-C", s, "-q", "gc", "--grace", "0"])
            if rc != 0:
                problems.append("gc: %s: gc --grace 0 exit %d: %s" % (s, rc, err.strip()))
    if verify:
        blobs = [l.split()[:3] for l in open(verify)]
        blobs = [f for f in blobs if len(f) == 3 and f[1] == "blob" and f[0] in states]

        def get(f):
            # To standard output, thrown away: `-o FILE` renames over FILE.
            rc, _, err = run(cairn, ["-C", f[0], "blob", "get", f[2], "--verify"], discard=True)
            return None if rc == 0 else "lost: %s: blob %s does not read back: %s" % (
                f[0], f[2], err.strip())
        problems += [p for p in POOL.map(get, blobs[:verify_max]) if p]
    if fsck_mode:
        for s in states:
            before = len(problems)
            fsck(cairn, s, fsck_mode == "strict", problems)
            if gc:
                problems[before:] = ["gc: " + p for p in problems[before:]]
    if gc:
        for s in states:
            tmp = os.path.join(s, "tmp")
            if is_state(s) and os.path.isdir(tmp) and os.listdir(tmp):
                left = sorted(os.listdir(tmp))
                problems.append("staging: %s/tmp holds %d entries after gc: %s"
                                % (s, len(left), " ".join(left[:3])))
    if inv:
        lines = []
        for s in states:
            lines += inventory(cairn, s)
        with open(inv, "w") as f:
            f.write("".join(l + "\n" for l in sorted(set(lines))))
    for p in problems:
        print(p.replace("\n", " | "))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
