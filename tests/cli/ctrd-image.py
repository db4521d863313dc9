#!/usr/bin/env python3
"""ctrd-image: build a small multi-layer image around a static busybox, as
an OCI layout directory and an OCI archive (tar) of it.

Layers, lowest first: busybox and its applet links, with /lowest.txt; /etc
files and /doomed.txt; a whiteout of /doomed.txt, an opaque /opq and
/top.txt; then, with EXTRA=N:BYTES in the environment (benchmarks), N
layers of BYTES of incompressible, repeatable data each.
Usage: ctrd-image.py BUSYBOX OUT_DIR OUT_TAR IMAGE_NAME
"""
import gzip
import hashlib
import io
import json
import os
import random
import sys
import tarfile

busybox, out, out_tar, name = sys.argv[1:5]
MTIME = 1700000000


def add(t, path, data=None, mode=0o644, kind=tarfile.REGTYPE, link=""):
    ti = tarfile.TarInfo(path)
    ti.mtime = MTIME
    ti.mode = mode
    ti.type = kind
    ti.linkname = link
    if data is not None:
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
    else:
        t.addfile(ti)


def layer(fill):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        fill(t)
    tar = raw.getvalue()
    gz = gzip.compress(tar, mtime=0)
    return tar, gz


def l1(t):
    add(t, "bin", mode=0o755, kind=tarfile.DIRTYPE)
    add(t, "bin/busybox", open(busybox, "rb").read(), mode=0o755)
    for a in ["sh", "cat", "echo", "ls", "test", "true", "sleep", "rm", "mkdir"]:
        add(t, "bin/" + a, kind=tarfile.SYMTYPE, link="busybox")
    add(t, "lowest.txt", b"from the lowest layer\n")
    add(t, "tmp", mode=0o1777, kind=tarfile.DIRTYPE)


def l2(t):
    add(t, "etc", mode=0o755, kind=tarfile.DIRTYPE)
    add(t, "etc/passwd", b"root:x:0:0:root:/:/bin/sh\n")
    add(t, "etc/group", b"root:x:0:\n")
    add(t, "doomed.txt", b"removed by the layer above\n")
    add(t, "opq", mode=0o755, kind=tarfile.DIRTYPE)
    add(t, "opq/old.txt", b"hidden by an opaque dir\n")


def l3(t):
    add(t, ".wh.doomed.txt")
    add(t, "opq", mode=0o755, kind=tarfile.DIRTYPE)
    add(t, "opq/.wh..wh..opq")
    add(t, "opq/new.txt", b"the opaque dir's own\n")
    add(t, "top.txt", b"from the top layer\n")


os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)


def blob(data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(out, "blobs", "sha256", d), "wb") as f:
        f.write(data)
    return "sha256:" + d


def extra(i, size):
    def fill(t):
        d = "data%d" % i
        add(t, d, mode=0o755, kind=tarfile.DIRTYPE)
        rnd = random.Random(i)
        left, j = size, 0
        while left > 0:
            n = min(left, 1 << 20)
            add(t, "%s/f%d" % (d, j), rnd.randbytes(n))
            left -= n
            j += 1
    return fill


fills = [l1, l2, l3]
if os.environ.get("EXTRA"):
    n, size = (int(x) for x in os.environ["EXTRA"].split(":"))
    fills += [extra(i, size) for i in range(n)]
layers, diff_ids = [], []
for fill in fills:
    tar, gz = layer(fill)
    diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                   "digest": blob(gz), "size": len(gz)})
config = json.dumps({
    "architecture": "amd64", "os": "linux",
    "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
    "rootfs": {"type": "layers", "diff_ids": diff_ids},
}, sort_keys=True).encode()
manifest = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
               "digest": blob(config), "size": len(config)},
    "layers": layers,
}, sort_keys=True).encode()
md = blob(manifest)
index = {"schemaVersion": 2, "manifests": [{
    "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md,
    "size": len(manifest),
    "annotations": {"io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1]}}]}
with open(os.path.join(out, "index.json"), "w") as f:
    json.dump(index, f)
with open(os.path.join(out, "oci-layout"), "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
with tarfile.open(out_tar, "w") as t:
    for root, dirs, files in os.walk(out):
        for fn in sorted(files):
            p = os.path.join(root, fn)
            t.add(p, arcname=os.path.relpath(p, out))
print(md)
