#!/usr/bin/env bash
# bench/ingest.sh: how fast `cairn blob put` ingests, beside the limits of
# this machine, all measured in one run on the same data.
#
# Workloads (all the same 1 GiB of random bytes, except the last):
#   1 x 1 GiB        cairn blob put FILE           (streaming writer, fsync)
#   100 x ~10 MiB    cairn blob put FILE...        (one batch: one syncfs, one transaction)
#   10000 x ~105 KiB cairn blob put FILE...
#   10000 x 4 KiB    cairn blob put FILE...        (the first 40 MB of the same bytes)
# Beside each, the same files through:
#   sha256          openssl dgst -sha256 FILES (single core, SHA-NI where the
#                   CPU has it, reading from the page cache): the hashing limit
#   sha256sum+cp    sha256sum FILES >/dev/null && cp FILES DIR/ (no sync)
#   dd fsync        dd bs=1M conv=fsync of the same number of bytes into one
#                   file: the buffered durable write rate
#   dd direct       dd bs=4M oflag=direct conv=fsync: the device's durable
#                   write rate without the page cache
# and `openssl speed -evp sha256 -bytes 1048576` (pure hashing, no reads).
#
# Every run starts in the same state: the previous output removed, the inputs
# read once more (warm page cache; nothing is ever dropped from it), `sync`,
# then a pause (--settle) so that freed blocks and pages have been returned
# before the clock starts. Each run is timed by hyperfine (which subtracts
# the shell's start-up); the commands take turns, one run each per round, for
# --runs rounds; the table shows medians and the spread.
#
# Usage: bench/ingest.sh [--runs N] [--settle SECONDS] [--dir DIR] [--only LIST]
#   --dir: where inputs and outputs go (one filesystem; default
#          $TMPDIR/cairn-bench-ingest); needs ~4 GiB free.
#   --only: comma-separated subset of: big,mid,small,tiny
#   CAIRN=path/to/cairn uses that binary instead of building build-bench/.
#   BASELINE=path/to/other/cairn measures that one too, in the same run (for
#   a before/after table: e.g. a release build of an earlier commit).
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
runs=5
settle=3
dir=${TMPDIR:-/tmp}/cairn-bench-ingest
only=big,mid,small,tiny
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=$2; shift 2 ;;
        --settle) settle=$2; shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "ingest.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done

for t in hyperfine openssl sha256sum python3 dd; do
    command -v "$t" >/dev/null || { echo "ingest.sh: $t is missing (scripts/deps installs it)" >&2; exit 1; }
done

if [ -z "${CAIRN:-}" ]; then
    if [ ! -f "$src/build-bench/build.ninja" ]; then
        meson setup "$src/build-bench" "$src" --buildtype=release -Dtests=false >/dev/null
    fi
    ninja -C "$src/build-bench" cli/cairn >/dev/null
    CAIRN=$src/build-bench/cli/cairn
fi

mkdir -p "$dir"
cd "$dir"
GIB=$((1 << 30))

# ---- data (made once, kept between runs of the bench) -----------------------
if [ ! -f big ] || [ "$(stat -c %s big)" -ne $GIB ]; then
    echo "making 1 GiB of random input in $dir ..." >&2
    rm -rf big mid small tiny
    head -c $GIB /dev/urandom >big.tmp
    mv big.tmp big
fi
if [ ! -d mid ]; then
    mkdir mid.tmp && (cd mid.tmp && split -n 100 -a 3 -d ../big m) && mv mid.tmp mid
fi
if [ ! -d small ]; then
    mkdir small.tmp && (cd small.tmp && split -n 10000 -a 5 -d ../big s) && mv small.tmp small
fi
if [ ! -d tiny ]; then
    mkdir tiny.tmp && (cd tiny.tmp && head -c $((10000 * 4096)) ../big | split -b 4096 -a 5 -d - t) \
        && mv tiny.tmp tiny
fi

# ---- measurement -------------------------------------------------------------
results=$dir/results
rm -rf "$results" out
mkdir -p "$results"

# One run under hyperfine: name, the files' glob (relative to $dir), command;
# its time is appended to $results/NAME.times. The prepare step removes the
# outputs, re-reads the inputs and settles.
measure() {
    local name=$1 files=$2 cmd=$3
    local prep="rm -rf out && mkdir out && cat $files >/dev/null && sync && sleep $settle"
    local bin=$CAIRN
    case "$name" in *-baseline) bin=$BASELINE ;; esac
    case "$cmd" in
        *CAIRN*) prep="rm -rf out && $bin init out >/dev/null && cat $files >/dev/null && sync && sleep $settle" ;;
    esac
    cmd=${cmd//CAIRN/$bin}
    hyperfine --style none --runs 1 --shell bash --prepare "$prep" \
        --export-json "$results/$name.json" "$cmd" >/dev/null 2>"$results/$name.err" || {
        echo "ingest.sh: '$cmd' failed:" >&2; cat "$results/$name.err" >&2; exit 1; }
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["results"][0]["times"][0])' \
        "$results/$name.json" >>"$results/$name.times"
}

declare -A wl_files wl_n wl_bytes
wl_files[big]=big;        wl_n[big]=1
wl_files[mid]='mid/*';    wl_n[mid]=100
wl_files[small]='small/*'; wl_n[small]=10000
wl_files[tiny]='tiny/*';  wl_n[tiny]=10000
for w in big mid small tiny; do
    # shellcheck disable=SC2086
    wl_bytes[$w]=$(cat ${wl_files[$w]} | wc -c)
done

echo "measuring (runs=$runs, settle=${settle}s); this takes a few minutes ..." >&2
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >"$results/load"

# Round robin: every command once per round, so that a change in what else
# the machine does lands on all of them alike.
IFS=, read -ra wanted <<<"$only"
for w in "${wanted[@]}"; do
    [ -n "${wl_files[$w]:-}" ] || { echo "ingest.sh: unknown workload '$w'" >&2; exit 2; }
done
for ((round = 1; round <= runs; round++)); do
  echo "  round $round of $runs" >&2
  openssl speed -evp sha256 -bytes 1048576 -seconds 2 2>/dev/null \
      | awk '/^sha256/ {v=$2; sub(/k$/, "", v); print v * 1000}' >>"$results/speed"
  for w in "${wanted[@]}"; do
    f=${wl_files[$w]}
    measure "$w-cairn" "$f" "CAIRN -C out blob put $f >/dev/null"
    if [ -n "${BASELINE:-}" ]; then
        measure "$w-baseline" "$f" "CAIRN -C out blob put $f >/dev/null"
    fi
    measure "$w-sha256" "$f" "openssl dgst -sha256 $f >/dev/null"
    measure "$w-sumcp" "$f" "sha256sum $f >/dev/null && cp $f out/"
    # The disk: the same number of bytes, durably, into one file.
    if [ "$w" = big ] || [ "$w" = tiny ]; then
        measure "$w-dd" "$f" "dd if=big of=out/dd bs=1M count=${wl_bytes[$w]} iflag=count_bytes conv=fsync status=none"
        measure "$w-dddirect" "$f" "dd if=big of=out/dd bs=4M count=${wl_bytes[$w]} iflag=count_bytes oflag=direct conv=fsync status=none"
    fi
  done
done
rm -rf out
echo "after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$results/load"

# ---- table -------------------------------------------------------------------
python3 - "$results" "$only" "${wl_bytes[big]}" "${wl_bytes[mid]}" "${wl_bytes[small]}" \
    "${wl_bytes[tiny]}" <<'PY'
import json, os, statistics, sys
res, only = sys.argv[1], sys.argv[2].split(",")
size = dict(zip(["big", "mid", "small", "tiny"], map(int, sys.argv[3:7])))
count = {"big": 1, "mid": 100, "small": 10000, "tiny": 10000}
label = {"big": "1 x 1 GiB", "mid": "100 x 10 MiB", "small": "10000 x 105 KiB",
         "tiny": "10000 x 4 KiB"}
speed = statistics.median(float(l) for l in open(os.path.join(res, "speed")) if l.strip())

def times(name):
    p = os.path.join(res, name + ".times")
    if not os.path.exists(p):
        return None
    return [float(l) for l in open(p) if l.strip()]

def med(name):
    t = times(name)
    return statistics.median(t) if t else None

def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "?"

def load():
    return "; ".join(l.strip() for l in open(os.path.join(res, "load")))

def spread(name):
    t = times(name)
    return f"{min(t):.3f}-{max(t):.3f}"

def mbs(b, t):
    return b / t / 1e6

# Disk rates: from the 1 GiB dd runs (the tiny workload has its own, 40 MB).
dd = {w: med(w + "-dd") for w in size}
ddd = {w: med(w + "-dddirect") for w in size}
big_cairn = med("big-cairn")

print(f"machine: {os.cpu_count()} cpus, {cpu_model()}; {load()}")
print(f"openssl speed -evp sha256 (1 MiB blocks, one core): {speed / 1e6:.0f} MB/s")
for w in ("big", "tiny"):
    if dd[w]:
        print(f"dd conv=fsync, {size[w] / 1e6:.0f} MB: buffered {mbs(size[w], dd[w]):.0f} MB/s, "
              f"oflag=direct {mbs(size[w], ddd[w]):.0f} MB/s")
print()
hdr = ("workload", "cairn s", "cairn MB/s", "vs sha speed", "sha256 s", "vs sha256",
       "sum+cp s", "cairn/sum+cp", "vs dd fsync", "vs dd direct", "per-blob us")
print("  ".join(f"{h:>12}" for h in hdr))
for w in ("big", "mid", "small", "tiny"):
    if w not in only:
        continue
    t, ts, tc = med(w + "-cairn"), med(w + "-sha256"), med(w + "-sumcp")
    b = size[w]
    rate = mbs(b, t)
    ref = "big" if dd["big"] else w
    ref_dd = dd.get(w) or dd[ref]
    ref_ddd = ddd.get(w) or ddd[ref]
    ref_b = size[w] if dd.get(w) else size[ref]
    vs_dd = rate / mbs(ref_b, ref_dd) if ref_dd else float("nan")
    vs_ddd = rate / mbs(ref_b, ref_ddd) if ref_ddd else float("nan")
    # Time per blob beyond the bytes: what is left after moving the bytes at
    # the single-blob rate.
    per = (t - b / (size["big"] / big_cairn)) / count[w] * 1e6 if big_cairn else float("nan")
    row = (label[w], f"{t:.3f}", f"{rate:.0f}", f"{rate * 1e6 / speed:.0%}", f"{ts:.3f}",
           f"{ts / t:.0%}", f"{tc:.3f}", f"{t / tc:.2f}x", f"{vs_dd:.0%}", f"{vs_ddd:.0%}",
           f"{per:.0f}" if w != "big" else "-")
    print("  ".join(f"{c:>12}" for c in row))
print()
print("spread of the runs (min-max seconds):")
for w in ("big", "mid", "small", "tiny"):
    if w in only:
        names = ["cairn", "baseline", "sha256", "sumcp"] + (["dd", "dddirect"] if dd.get(w) else [])
        print(f"  {label[w]:>16}: " + ", ".join(
            f"{n} {spread(w + '-' + n)}" for n in names if med(w + "-" + n) is not None))
if any(med(w + "-baseline") is not None for w in size):
    print()
    print("baseline (BASELINE binary), same data, same run:")
    for w in ("big", "mid", "small", "tiny"):
        if w in only and med(w + "-baseline") is not None:
            t, tb, tc = med(w + "-cairn"), med(w + "-baseline"), med(w + "-sumcp")
            print(f"  {label[w]:>16}: baseline {tb:.3f} s ({mbs(size[w], tb):.0f} MB/s, "
                  f"{tb / tc:.2f}x sum+cp) -> cairn {t:.3f} s ({mbs(size[w], t):.0f} MB/s, "
                  f"{t / tc:.2f}x sum+cp): {tb / t:.2f}x faster")
print()
print("cairn s: median wall time of `cairn blob put` (hash, stage, make durable, rename, record).")
print("vs sha speed: cairn's rate / openssl speed; vs sha256: openssl dgst time / cairn time")
print("(both 100% = cairn hashes as fast as one core can). cairn/sum+cp: cairn time / time of")
print("sha256sum + cp (which syncs nothing). vs dd: cairn's rate / dd's durable rate of the same")
print("bytes (the 4 KiB batch against 40 MB of dd, the others against 1 GiB).")
print("per-blob us: (cairn time - bytes / cairn's 1 GiB rate) / blobs.")
PY
