"""The table (table.md) and the plot (fleet.png) of a run's results: the real
run (real.jsonl) and whatever model runs are beside it (model-*.jsonl)."""
import json
import os

ORDER = ["cold", "export", "save", "cairn"]
COLORS = {"cold": "tab:gray", "export": "tab:orange", "save": "tab:red", "cairn": "tab:blue"}


def human(n):
    n = float(n)
    for u in ["B", "KB", "MB", "GB", "TB"]:
        if abs(n) < 1000 or u == "TB":
            return ("%.0f %s" if u == "B" else "%.1f %s") % (n, u)
        n /= 1000.0


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else 0


def load(out, label):
    p = os.path.join(out, label + ".jsonl")
    if not os.path.exists(p):
        return None, None
    rows = [json.loads(l) for l in open(p)]
    mp = os.path.join(out, label + "-meta.json")
    meta = json.load(open(mp)) if os.path.exists(mp) else {}
    return rows, meta


def summarize(rows, meta):
    res = {}
    by = {}
    for r in rows:
        by.setdefault(r["strategy"], []).append(r)
    summ = {s["strategy"]: s for s in meta.get("strategies", [])}
    for name in [n for n in ORDER if n in by] + [n for n in by if n not in ORDER]:
        rs = by[name]
        n = len(rs)
        look = sum(r["build"]["lookups"] for r in rs)
        hits = sum(r["build"]["hits"] for r in rs)
        built = sum(r["build"]["built"] for r in rs)
        cold = sum(r["build"]["cold_steps"] for r in rs)
        moved = sum(r[p]["bytes"] + r[p]["meta"] for r in rs for p in ("startup", "shutdown"))
        up = [r["startup"]["s"] for r in rs]
        down = [r["shutdown"]["s"] for r in rs]
        bld = [r["build"]["s"] for r in rs]
        res[name] = dict(
            sessions=n, hit_rate=hits / look if look else 0, work_saved=1 - built / cold,
            startup_mean=sum(up) / n, startup_p95=pct(up, 0.95),
            shutdown_mean=sum(down) / n, shutdown_p95=pct(down, 0.95),
            build_mean=sum(bld) / n,
            session_mean=(sum(up) + sum(down) + sum(bld)) / n,
            stored=summ.get(name, {}).get("remote_bytes", rs[-1]["remote_bytes"]),
            moved=moved, moved_per_session=moved / n,
            background_s=summ.get(name, {}).get("background_s", 0))
    return res


COLUMNS = [
    ("hit rate", lambda s: "%.0f%%" % (100 * s["hit_rate"])),
    ("work saved", lambda s: "%.0f%%" % (100 * s["work_saved"])),
    ("startup mean/p95 s", lambda s: "%.2f / %.2f" % (s["startup_mean"], s["startup_p95"])),
    ("shutdown mean/p95 s", lambda s: "%.2f / %.2f" % (s["shutdown_mean"], s["shutdown_p95"])),
    ("build mean s", lambda s: "%.2f" % s["build_mean"]),
    ("bytes stored", lambda s: human(s["stored"])),
    ("bytes moved", lambda s: human(s["moved"])),
    ("moved/session", lambda s: human(s["moved_per_session"])),
    ("background s", lambda s: "%.0f" % s["background_s"]),
]


def table(title, res):
    lines = ["### " + title, "",
             "| strategy | " + " | ".join(c for c, _ in COLUMNS) + " |",
             "|---|" + "---:|" * len(COLUMNS)]
    for name, s in res.items():
        lines.append("| %s | " % name + " | ".join(f(s) for _, f in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def plot(out, sets):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(sets), 2, figsize=(12, 4.6 * len(sets)), squeeze=False)
    for row, (title, rows, res) in enumerate(sets):
        # nothing stored (cold) is drawn at the left edge, not at 0 on a log axis
        nz = [r["remote_bytes"] for r in rows if r["remote_bytes"] > 0]
        floor = (min(nz) / 3 if nz else 1e3) / 1e6
        for col, phase in enumerate(["startup", "shutdown"]):
            ax = axes[row][col]
            for name in res:
                rs = [r for r in rows if r["strategy"] == name]
                step = max(1, len(rs) // 3000)
                xs = [max(r["remote_bytes"] / 1e6, floor) for r in rs[::step]]
                ys = [r[phase]["s"] for r in rs[::step]]
                ax.scatter(xs, ys, s=6, alpha=0.35, color=COLORS.get(name), label=None)
                ax.scatter([max(res[name]["stored"] / 1e6, floor)], [res[name][phase + "_mean"]],
                           s=140, marker="*", edgecolor="black", color=COLORS.get(name),
                           label="%s (mean %.2f s, %s stored)" % (
                               name, res[name][phase + "_mean"], human(res[name]["stored"])))
            ax.set_xscale("log")
            ax.set_xlabel("bytes stored in the backend at the session's end (MB, log)")
            ax.set_ylabel(phase + " time per session (s)")
            ax.set_title("%s: %s" % (title, phase), fontsize=10)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle("fleet: startup and shutdown time against bytes stored, per strategy "
                 "(dots: sessions; stars: means at the final bytes stored)", fontsize=11)
    fig.tight_layout()
    p = os.path.join(out, "fleet.png")
    fig.savefig(p, dpi=90)
    return p


def report(out):
    parts, sets = [], []
    rmeta = {}
    for label, title in [("real", "real run"), ("model-small", "model at the real run's size"),
                         ("model-large", "model, large scale")]:
        rows, meta = load(out, label)
        if rows is None:
            continue
        if label == "real":
            rmeta = meta
        z = meta.get("sizes", {})
        title = "%s: %s modules, %s sessions, %s engines" % (
            title, z.get("modules"), z.get("sessions"), z.get("engines"))
        if label == "real":
            title += " (load %s before, %s after)" % (meta.get("load_before"),
                                                      meta.get("load_after"))
        else:
            title += " (load %s at its end)" % meta.get("load")
        res = summarize(rows, meta)
        parts.append(table(title, res))
        if label != "model-small":
            sets.append((title.split(" (")[0], rows, res))
        with open(os.path.join(out, label + "-summary.json"), "w") as f:
            json.dump(res, f, indent=1)
    head = "## fleet results\n\ncommand: `%s`\n\n" % " ".join(
        ["bench/fleet/" + os.path.basename(rmeta.get("argv", ["fleet.py"])[0])] +
        rmeta.get("argv", [])[1:])
    text = head + "\n".join(parts)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(text)
    print(text)
    if sets:
        print("plot:", plot(out, sets))
