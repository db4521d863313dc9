#!/bin/bash
# test-pool.sh: cairn pool over a directory (file://): the whole scenario of
# pool-lib.sh, then a pool of a newer format refused and a path that is no
# pool. test-pool-remotes.sh runs the scenario against an S3 server and a
# registry, with the remote going down.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pool-lib.sh"
pool_scenario "file://$T/pool"

step "a pool of a newer format is refused; a directory that is no pool says so"
python3 - "$T/newer" <<'PY'
import hashlib, json, os, sys
root = sys.argv[1]
empty = b"{}"
ed = hashlib.sha256(empty).hexdigest()
os.makedirs(f"{root}/blobs/sha256", exist_ok=True)
open(f"{root}/blobs/sha256/{ed}", "wb").write(empty)
m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "artifactType": "application/vnd.cairn.pool.v1",
     "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": "sha256:" + ed, "size": 2},
     "layers": [], "annotations": {"cairn.pool.format": "2"}}
b = json.dumps(m).encode()
os.makedirs(f"{root}/states/_pool", exist_ok=True)
open(f"{root}/states/_pool/" + hashlib.sha256(b).hexdigest(), "wb").write(b)
PY
fails 1 "format 2, this cairn reads up to 1" -- cairn pool provision "file://$T/newer" base "$T/n1"
[ ! -e "$T/n1" ] || die "a refused provision made its DEST"
fails 1 "format 2" -- cairn pool init "file://$T/newer"
fails 1 "not a pool .*cairn pool init" -- cairn pool provision "file://$T/nopool" base "$T/n2"
fails 1 "not a pool" -- cairn pool ls "file://$T/nopool"
echo "ok"
