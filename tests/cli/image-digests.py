#!/usr/bin/env python3
"""image-digests.py PATH [REF]: the names and digests of one image in an
artifact, one fact a line, for tests to compare:

    manifest sha256:...      the manifest's digest (no line for a docker-archive: it has none)
    mediatype TYPE           the manifest's media type, or docker-archive
    config sha256:...        the config blob's digest
    layer sha256:... TYPE    each layer blob, bottom first, with its media type
    diffid sha256:...        each layer's DiffID, from the config
    chain sha256:...         the top layer's ChainID: the snapshot that holds the image
    name NAME                each name the artifact gives the image (ref.name,
                             io.containerd.image.name, RepoTags)

PATH is an OCI image layout (directory or tar, with or without a Docker
manifest.json beside it) or a docker-archive (directory or tar: `docker save`,
`skopeo copy ... docker-archive:`). REF picks an image by its ref.name,
io.containerd.image.name or RepoTag; without it there must be one image."""
import hashlib
import json
import os
import sys
import tarfile

REF_NAME = "org.opencontainers.image.ref.name"
CTR_NAME = "io.containerd.image.name"


class Source:
    def __init__(self, path):
        self.tar = None
        self.root = path
        if os.path.isfile(path):
            self.tar = tarfile.open(path)
            self.members = {os.path.normpath(m.name): m for m in self.tar.getmembers()}

    def read(self, name):
        name = os.path.normpath(name)
        if self.tar is None:
            with open(os.path.join(self.root, name), "rb") as f:
                return f.read()
        m = self.members[name]
        seen = 0
        while m.issym() or m.islnk():
            # docker-archives link <id>/layer.tar to the blob beside it.
            target = m.linkname if m.islnk() else os.path.join(os.path.dirname(name), m.linkname)
            name = os.path.normpath(target)
            m = self.members[name]
            seen += 1
            if seen > 8:
                raise SystemExit(f"{name}: too many links")
        return self.tar.extractfile(m).read()

    def has(self, name):
        name = os.path.normpath(name)
        if self.tar is None:
            return os.path.exists(os.path.join(self.root, name))
        return name in self.members

    def blob(self, digest):
        algo, hexd = digest.split(":", 1)
        return self.read(f"blobs/{algo}/{hexd}")


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def chain_of(diff_ids):
    chain = None
    for d in diff_ids:
        chain = d if chain is None else sha((chain + " " + d).encode())
    return chain


def main():
    if len(sys.argv) not in (2, 3):
        raise SystemExit("usage: image-digests.py PATH [REF]")
    src = Source(sys.argv[1])
    ref = sys.argv[2] if len(sys.argv) == 3 else None
    out = []
    if src.has("index.json"):
        idx = json.loads(src.read("index.json"))
        cands = []
        for d in idx.get("manifests", []):
            ann = d.get("annotations") or {}
            names = [n for n in (ann.get(REF_NAME), ann.get(CTR_NAME)) if n]
            if ref is None or ref in names:
                cands.append((d, names))
        if len(cands) != 1:
            raise SystemExit(f"{sys.argv[1]}: {len(cands)} images match {ref or 'no ref'}")
        desc, names = cands[0]
        raw = src.blob(desc["digest"])
        if sha(raw) != desc["digest"]:
            raise SystemExit(f"manifest {desc['digest']}: its bytes have another digest")
        man = json.loads(raw)
        out.append(f"manifest {desc['digest']}")
        out.append(f"mediatype {man.get('mediaType') or desc.get('mediaType')}")
        cfg_digest = man["config"]["digest"]
        cfg = json.loads(src.blob(cfg_digest))
        out.append(f"config {cfg_digest}")
        for l in man["layers"]:
            out.append(f"layer {l['digest']} {l['mediaType']}")
    elif src.has("manifest.json"):
        entries = json.loads(src.read("manifest.json"))
        cands = [e for e in entries if ref is None or ref in (e.get("RepoTags") or [])]
        if len(cands) != 1:
            raise SystemExit(f"{sys.argv[1]}: {len(cands)} images match {ref or 'no ref'}")
        e = cands[0]
        names = e.get("RepoTags") or []
        raw = src.read(e["Config"])
        cfg = json.loads(raw)
        out.append("mediatype docker-archive")
        out.append(f"config {sha(raw)}")
        for l in e["Layers"]:
            out.append(f"layer {sha(src.read(l))} docker-archive")
    else:
        raise SystemExit(f"{sys.argv[1]}: neither index.json nor manifest.json")
    diff_ids = cfg["rootfs"]["diff_ids"]
    out += [f"diffid {d}" for d in diff_ids]
    out.append(f"chain {chain_of(diff_ids)}")
    out += [f"name {n}" for n in names]
    print("\n".join(out))


main()
