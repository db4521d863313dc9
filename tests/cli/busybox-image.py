#!/usr/bin/env python3
"""busybox-image.py OUT NAME FORMAT [SEED]: an image of Debian's busybox-static
in four layers, written as a docker-archive (FORMAT docker) or an oci-archive
(FORMAT oci, gzip layers), named NAME. SEED (default 0) changes a file of the
last layer, so two seeds make two images that share their first layers.

  1 bin/busybox, etc/passwd, etc/motd, opq/old/file, a hardlink pair
  2 symlinks bin/sh, bin/ls, bin/cat -> busybox; tmp/ mode 1777; an owner
  3 a whiteout (etc/motd deleted), an opaque directory (opq/ replaced)
  4 etc/seed (its content from SEED)
"""
import gzip, hashlib, io, json, shutil, sys, tarfile

out, name, fmt = sys.argv[1:4]
seed = sys.argv[4] if len(sys.argv) > 4 else "0"
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
with open(BUSYBOX, "rb") as f:
    busybox = f.read()
MTIME = 1700000000


def tar_of(entries):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as t:
        for e in entries:
            kind, path = e[0], e[1]
            ti = tarfile.TarInfo(path)
            ti.mtime = MTIME
            data = None
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, e[2] if len(e) > 2 else 0o755
            elif kind == "file":
                data = e[2]
                ti.size, ti.mode = len(data), e[3] if len(e) > 3 else 0o644
                if len(e) > 4:
                    ti.uid, ti.gid = e[4]
            elif kind == "link":
                ti.type, ti.linkname, ti.mode = tarfile.LNKTYPE, e[2], 0o644
            elif kind == "sym":
                ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, e[2], 0o777
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return b.getvalue()


layers = [
    tar_of([("dir", "bin"), ("file", "bin/busybox", busybox, 0o755), ("dir", "etc"),
            ("file", "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
            ("file", "etc/motd", b"to be deleted\n"), ("dir", "opq"), ("dir", "opq/old"),
            ("file", "opq/old/file", b"old\n"), ("file", "etc/group", b"root:x:0:\n"),
            ("link", "etc/group.hard", "etc/group")]),
    tar_of([("dir", "bin"), ("sym", "bin/sh", "busybox"), ("sym", "bin/ls", "busybox"),
            ("sym", "bin/cat", "busybox"), ("dir", "tmp", 0o1777), ("dir", "home"),
            ("file", "home/owned", b"mine\n", 0o600, (1000, 1000))]),
    tar_of([("dir", "etc"), ("file", "etc/.wh.motd", b""), ("dir", "opq"),
            ("file", "opq/.wh..wh..opq", b""), ("file", "opq/new", b"new\n")]),
    tar_of([("dir", "etc"), ("file", "etc/seed", ("seed %s\n" % seed).encode())]),
]
diff_ids = ["sha256:" + hashlib.sha256(l).hexdigest() for l in layers]
config = json.dumps({
    "architecture": "amd64", "os": "linux",
    "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
    "rootfs": {"type": "layers", "diff_ids": diff_ids},
    "history": [{"created_by": "busybox-image.py layer %d" % i} for i in range(len(layers))],
}, sort_keys=True).encode()


def sha(b):
    return hashlib.sha256(b).hexdigest()


files = {}
if fmt == "docker":
    names = []
    for l in layers:
        p = sha(l) + "/layer.tar"
        files[p] = l
        names.append(p)
    files[sha(config) + ".json"] = config
    files["manifest.json"] = json.dumps([{"Config": sha(config) + ".json", "RepoTags": [name],
                                          "Layers": names}]).encode()
elif fmt == "oci":
    descs = []
    for l in layers:
        z = gzip.compress(l, mtime=0)
        files["blobs/sha256/" + sha(z)] = z
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                      "digest": "sha256:" + sha(z), "size": len(z)})
    files["blobs/sha256/" + sha(config)] = config
    man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                 "digest": "sha256:" + sha(config), "size": len(config)},
                      "layers": descs}, sort_keys=True).encode()
    files["blobs/sha256/" + sha(man)] = man
    files["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + sha(man),
        "size": len(man), "annotations": {"io.containerd.image.name": name,
                                          "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1]}}]}).encode()
    files["oci-layout"] = b'{"imageLayoutVersion":"1.0.0"}'
else:
    sys.exit("FORMAT: docker or oci")

with tarfile.open(out, "w") as t:
    for p, data in files.items():
        ti = tarfile.TarInfo(p)
        ti.size, ti.mtime = len(data), MTIME
        t.addfile(ti, io.BytesIO(data))
