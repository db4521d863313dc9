# crash-lib.sh: fixtures shared by crash.sh and soak.sh (sourced after
# tests/cli/lib.sh, so T and cairn are set).
#   dg STRING            a digest made of a string (cache keys, ops)
#   fill_tree DIR SEED   files of every kind the DiffID covers: nested
#                        directories, hardlinks, symlinks, xattrs, modes,
#                        owners, an empty file, fixed times; SEED varies the
#                        bytes so that two trees differ
#   fill_child DIR       changes over a fill_tree: a whiteout, an opaque
#                        directory, a new hardlink group, a changed file
#   make_inputs DIR      files to put (small1 1 KiB, small2 50 KiB, big 10 MB:
#                        more than two slots of the ingest pipeline), a layer
#                        (layer.tgz) and an OCI image layout (layout, refs v1
#                        and v2, sharing their first layers)
#   make_base DIR IN     a state with something of every kind: blobs, a chain
#                        of two snapshots, image v1, records with a link, a
#                        volume with a version, a lease; prints shell
#                        assignments of the names it made

dg() { printf 'sha256:%s' "$(printf '%s' "$1" | sha256sum | cut -d' ' -f1)"; }

fill_tree() {
    local d=$1 seed=$2
    mkdir -p "$d/etc/conf.d" "$d/usr/bin" "$d/usr/lib/deep/er" "$d/var/empty" "$d/opq/old"
    printf 'hello %s\n' "$seed" >"$d/etc/hello"
    printf 'conf %s\n' "$seed" >"$d/etc/conf.d/a.conf"
    head -c 200000 </dev/zero | tr '\0' "$(echo ABCDEFGHIJKLMNOPQRSTUVWXYZ | cut -c$((1 + seed % 26)))" >"$d/usr/bin/tool"
    chmod 755 "$d/usr/bin/tool"
    ln "$d/usr/bin/tool" "$d/usr/bin/tool-alias"
    ln "$d/usr/bin/tool" "$d/usr/lib/deep/er/tool-again"
    ln -s ../etc/hello "$d/usr/hello"
    ln -s /nowhere "$d/usr/dangling"
    : >"$d/var/empty/file"
    echo old >"$d/opq/old/file"
    for i in 1 2 3 4 5 6; do printf 'lib %s %s\n' "$i" "$seed" >"$d/usr/lib/lib$i.so"; done
    setfattr -n user.note -v "note $seed" "$d/etc/hello"
    chmod 0600 "$d/etc/conf.d/a.conf"
    chown 42:43 "$d/etc/conf.d"
    find "$d" -exec touch -h -d '2024-01-02 03:04:05' {} +
}

fill_child() {
    local d=$1
    mkdir -p "$d/etc" "$d/opq" "$d/srv"
    mknod "$d/etc/hello" c 0 0                          # a whiteout: etc/hello deleted
    setfattr -n trusted.overlay.opaque -v y "$d/opq"    # opq/ replaced whole
    echo fresh >"$d/opq/fresh"
    head -c 1000000 </dev/zero | tr '\0' 'q' >"$d/srv/data"
    ln "$d/srv/data" "$d/srv/data-link"
    echo changed >"$d/etc/new"
    find "$d" -exec touch -h -d '2024-02-03 04:05:06' {} +
}

make_inputs() {
    local in=$1
    mkdir -p "$in"
    head -c 1024 /dev/urandom >"$in/small1"
    head -c 50000 /dev/urandom >"$in/small2"
    head -c 10000000 /dev/urandom >"$in/big"
    head -c 300 /dev/urandom >"$in/junk1"
    head -c 70000 /dev/urandom >"$in/junk2"
    # A layer: the diff of a committed snapshot, exported by cairn itself.
    local s=$in/layer-state a
    cairn init "$s" >/dev/null
    a=$(cairn -C "$s" snapshot prepare)
    fill_tree "$s/active/$a/fs" 7
    cairn -C "$s" snapshot commit "$a" >/dev/null
    cairn -C "$s" layer export "$(cairn -C "$s" snapshot ls | cut -d' ' -f1)" \
        --compression gzip -o "$in/layer.tgz" >/dev/null
    rm -rf "$s"
    make_layout "$in/layout"
}

# make_layout DIR: an OCI image layout with two images: v1 (two layers,
# gzip and plain) and v2 (v1's layers and a third with a whiteout and an
# opaque directory).
make_layout() {
    python3 - "$1" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile
root = sys.argv[1]
os.makedirs(os.path.join(root, "blobs", "sha256"), exist_ok=True)
def blob(b):
    d = hashlib.sha256(b).hexdigest()
    with open(os.path.join(root, "blobs", "sha256", d), "wb") as f:
        f.write(b)
    return "sha256:" + d
def tar(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, data in entries:
            i = tarfile.TarInfo(name)
            i.mtime = 1700000000
            if kind == "d":
                i.type, i.mode = tarfile.DIRTYPE, 0o755
                t.addfile(i)
            elif kind == "f":
                i.size, i.mode = len(data), 0o644
                t.addfile(i, io.BytesIO(data))
            elif kind == "l":
                i.type, i.linkname = tarfile.SYMTYPE, data
                t.addfile(i)
            elif kind == "h":
                i.type, i.linkname = tarfile.LNKTYPE, data
                t.addfile(i)
    return buf.getvalue()
l1 = tar([("etc/", "d", None), ("etc/os-release", "f", b"ID=crash\n"),
          ("bin/", "d", None), ("bin/sh", "f", b"\x7fELF" + bytes(range(256)) * 800),
          ("bin/ash", "h", "bin/sh"), ("bin/busybox", "l", "sh"),
          ("opq/", "d", None), ("opq/old", "f", b"old\n")])
l2 = tar([("usr/", "d", None), ("usr/share/", "d", None),
          ("usr/share/big", "f", os.urandom(400000)), ("etc/motd", "f", b"hi\n")])
l3 = tar([("etc/", "d", None), ("etc/.wh.motd", "f", b""), ("opq/", "d", None),
          ("opq/.wh..wh..opq", "f", b""), ("opq/new", "f", b"new\n")])
def layer(b, gz):
    return ((blob(gzip.compress(b, mtime=0)) if gz else blob(b)),
            len(gzip.compress(b, mtime=0)) if gz else len(b),
            "sha256:" + hashlib.sha256(b).hexdigest(),
            "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gz else ""))
L = [layer(l1, True), layer(l2, False), layer(l3, True)]
def image(layers, tag):
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "config": {"Env": ["TAG=" + tag]},
                      "rootfs": {"type": "layers", "diff_ids": [l[2] for l in layers]}}).encode()
    man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                 "digest": blob(cfg), "size": len(cfg)},
                      "layers": [{"mediaType": l[3], "digest": l[0], "size": l[1]} for l in layers]}).encode()
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": blob(man),
            "size": len(man), "annotations": {"org.opencontainers.image.ref.name": tag}}
idx = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
       "manifests": [image(L[:2], "v1"), image(L, "v2")]}
open(os.path.join(root, "index.json"), "w").write(json.dumps(idx))
open(os.path.join(root, "oci-layout"), "w").write('{"imageLayoutVersion": "1.0.0"}')
PY
}

make_base() {
    local s=$1 in=$2 a b1 b2 ch1 ch2 k1 k2 op v
    cairn init "$s" >/dev/null
    b1=$(cairn -C "$s" blob put "$in/small1" | cut -d' ' -f1)
    b2=$(cairn -C "$s" blob put "$in/small2" | cut -d' ' -f1)
    a=$(cairn -C "$s" snapshot prepare)
    fill_tree "$s/active/$a/fs" 1
    ch1=$(cairn -C "$s" snapshot commit "$a")
    a=$(cairn -C "$s" snapshot prepare "$ch1")
    fill_child "$s/active/$a/fs"
    ch2=$(cairn -C "$s" snapshot commit "$a")
    cairn -C "$s" -q image import "$in/layout:v1" >/dev/null
    k1=$(dg "key one") k2=$(dg "key two") op=$(dg "op exec")
    cairn -C "$s" record put "$k1" "$b1" >/dev/null
    cairn -C "$s" record put "$k2" "$ch2" --kind snapshot --link-from "$k1" --op "$op" >/dev/null
    a=$(cairn -C "$s" volume open apt)
    mkdir -p "$s/active/$a/fs/archives"
    echo "deb one" >"$s/active/$a/fs/archives/one.deb"
    v=$(cairn -C "$s" volume save apt "$a")
    cairn -C "$s" lease create L1 >/dev/null
    cairn -C "$s" lease add L1 blob "$b2" >/dev/null
    printf 'B1=%s B2=%s CH1=%s CH2=%s K1=%s K2=%s OP=%s V1=%s\n' \
        "$b1" "$b2" "$ch1" "$ch2" "$k1" "$k2" "$op" "$v"
}
