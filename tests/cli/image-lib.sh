# image-lib.sh: helpers for the image tests, sourced after lib.sh.
#   make_image LAYOUT REF   a 3-layer image built with umoci: modes, owners,
#                           xattrs, symlinks, hardlinks; then deletions
#                           (whiteouts by umoci repack); then a hand-made
#                           layer with an opaque directory (umoci raw add-layer)
#   tree_sig DIR            one line per path: type, mode, owner, size, content
#                           digest, link target, xattrs, mtime of files; then
#                           the hardlink groups
#   layout_rewrite LAYOUT PY  run python on the layout's documents (variables
#                           idx, man, cfg; blob(bytes) -> digest) and rewrite
#                           the chain of digests so that they stay consistent

make_image() {
    local lay=$1 ref=$2 b
    b=$(mktemp -d "$T/bundle-XXXXXX")
    rmdir "$b"
    [ -d "$lay" ] || umoci init --layout "$lay"
    umoci new --image "$lay:$ref"
    umoci unpack --image "$lay:$ref" "$b" >/dev/null
    local R=$b/rootfs
    # Layer 1: a bit of everything.
    mkdir -p "$R/etc" "$R/data/sub" "$R/gone/deep" "$R/opq/old" "$R/usr/bin"
    echo hello >"$R/data/a"
    ln "$R/data/a" "$R/data/hard"
    ln -s ../etc/conf "$R/data/link"
    ln -s /nowhere/at/all "$R/data/dangling"
    echo conf >"$R/etc/conf"
    chmod 4755 "$R/etc/conf"
    mkdir "$R/private"; echo secret >"$R/private/key"; chmod 0700 "$R/private"
    chown 1234:5678 "$R/data/a"
    chown -h 42:43 "$R/data/link"
    setfattr -n user.color -v blue "$R/data/a"
    setfattr -n user.empty "$R/etc/conf"
    echo x >"$R/gone/deep/f"
    echo y >"$R/data/sub/old"
    echo o >"$R/opq/old/file"
    head -c 300000 /dev/urandom >"$R/usr/bin/big"
    touch -d '2001-02-03 04:05:06' "$R/etc/conf"
    mkfifo "$R/data/fifo"
    umoci repack --refresh-bundle --image "$lay:$ref" "$b" >/dev/null
    # Layer 2: deletions (whiteouts) and changes.
    rm -rf "$R/gone" "$R/data/sub/old"
    echo new >"$R/data/sub/new"
    echo changed >"$R/etc/conf"
    chmod 0600 "$R/etc/conf"
    umoci repack --refresh-bundle --image "$lay:$ref" "$b" >/dev/null
    # Layer 3: an opaque directory, made by hand.
    local l3=$T/l3
    rm -rf "$l3"; mkdir -p "$l3/opq/fresh"
    echo fresh >"$l3/opq/fresh/file"
    touch "$l3/opq/.wh..wh..opq"
    tar -C "$l3" --numeric-owner --owner=0 --group=0 -cf "$T/l3.tar" opq
    umoci raw add-layer --image "$lay:$ref" "$T/l3.tar"
    rm -rf "$b" "$l3" "$T/l3.tar"
}

tree_sig() {
    python3 - "$1" <<'PY'
import hashlib, os, stat, sys
root = sys.argv[1]
lines, inodes = [], {}
for dp, dns, fns in os.walk(root):
    dns.sort()
    for n in sorted(dns + fns) + ([] if dp != root else ["."]):
        p = os.path.normpath(os.path.join(dp, n))
        rel = os.path.relpath(p, root)
        st = os.lstat(p)
        m = st.st_mode
        kind = "d" if stat.S_ISDIR(m) else "l" if stat.S_ISLNK(m) else "f" if stat.S_ISREG(m) else "p" if stat.S_ISFIFO(m) else "c" if stat.S_ISCHR(m) else "?"
        extra = ""
        if kind == "f":
            extra = hashlib.sha256(open(p, "rb").read()).hexdigest()[:16] + " %d" % st.st_size
            extra += " t%d" % int(st.st_mtime)
            if st.st_nlink > 1:
                inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
        elif kind == "l":
            extra = "-> " + os.readlink(p)
        elif kind == "c":
            extra = "%d,%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
        xs = []
        if kind != "l":
            for x in sorted(os.listxattr(p, follow_symlinks=False)):
                if x.startswith("security.") or x.startswith("trusted.overlay."):
                    continue
                xs.append("%s=%s" % (x, os.getxattr(p, x, follow_symlinks=False).hex()))
        lines.append("%s %s %o %d:%d %s %s" % (rel, kind, stat.S_IMODE(m), st.st_uid, st.st_gid, extra, " ".join(xs)))
lines = sorted(set(lines))
for l in lines:
    print(l)
for g in sorted(sorted(v) for v in inodes.values() if len(v) > 1):
    print("hardlinks:", " ".join(g))
PY
}

# layout_rewrite LAYOUT PYTHON: edit the image's documents in place.
layout_rewrite() {
    python3 - "$1" "$2" <<'PY'
import hashlib, json, os, sys
lay, code = sys.argv[1], sys.argv[2]
B = os.path.join(lay, "blobs", "sha256")
def load(d): return json.load(open(os.path.join(B, d[7:])))
def blob(data):
    if isinstance(data, str): data = data.encode()
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    open(os.path.join(B, d[7:]), "wb").write(data)
    return d
def dump(o): return json.dumps(o, separators=(",", ":"))
idx = json.load(open(os.path.join(lay, "index.json")))
man = load(idx["manifests"][0]["digest"])
cfg = load(man["config"]["digest"])
cfg_raw = man_raw = None
exec(code)
c = cfg_raw if cfg_raw is not None else dump(cfg)
man["config"]["digest"] = blob(c); man["config"]["size"] = len(c.encode() if isinstance(c, str) else c)
m = man_raw if man_raw is not None else dump(man)
idx["manifests"][0]["digest"] = blob(m); idx["manifests"][0]["size"] = len(m.encode() if isinstance(m, str) else m)
open(os.path.join(lay, "index.json"), "w").write(dump(idx))
PY
}

# The layer digests of a layout's first manifest, one a line.
layout_layers() {
    python3 - "$1" <<'PY'
import json, os, sys
lay = sys.argv[1]
idx = json.load(open(os.path.join(lay, "index.json")))
man = json.load(open(os.path.join(lay, "blobs/sha256", idx["manifests"][0]["digest"][7:])))
for l in man["layers"]:
    print(l["digest"])
PY
}

# The chain ids of a layout's first image, computed here from its config.
layout_chain_ids() {
    python3 - "$1" <<'PY'
import hashlib, json, os, sys
lay = sys.argv[1]
B = os.path.join(lay, "blobs/sha256")
idx = json.load(open(os.path.join(lay, "index.json")))
man = json.load(open(os.path.join(B, idx["manifests"][0]["digest"][7:])))
cfg = json.load(open(os.path.join(B, man["config"]["digest"][7:])))
chain = None
for d in cfg["rootfs"]["diff_ids"]:
    chain = d if chain is None else "sha256:" + hashlib.sha256((chain + " " + d).encode()).hexdigest()
    print(chain)
PY
}
