#!/usr/bin/env bash
# Images made by the tools people use, not by fixtures of our own: umoci,
# skopeo, buildah, podman, containerd's ctr and Docker 20.10's dockerd
# (Debian's docker.io, which scripts/deps unpacks), all offline, all in
# private roots under the scratch
# directory. For each artifact (tool x format), one cell per check:
#   import     cairn image import: the expected name, its top is the ChainID of
#              the config's DiffIDs, the artifact's manifest digest is kept
#   checkout   snapshot checkout of the top lists as the tool's own unpack
#              (umoci unpack, buildah or podman mount, ctr images mount)
#   copy       the same with checkout --copy
#   export     image export as a layout and as an oci-archive: the same
#              manifest, config and layer digests (nothing was recompressed)
#   skopeo     skopeo reads the layout export (same manifest digest) and copies it
#   umoci      umoci unpack of the layout export lists as the reference
#   ctr        ctr images import of the archive export: an image with its
#              manifest digest, whose mount lists as the reference
#   podman     podman load of the archive export: the config digest as its id,
#              the manifest digest known, its mount lists as the reference
#   docker-archive  skopeo reads the archive export as a docker-archive (the
#              manifest.json that `docker load` needs): the same config and chain
#   docker     docker load of the archive export: an image with the config digest
# A cell is ok; FAIL (cairn's fault; the message is what cairn or the check
# printed); n/a (a limit of the peer tool: umoci 0.4.7 reads neither zstd nor
# Docker media types, docker 20.10 loads no zstd); or blocked
# (what it needs failed first). The test fails if a cell fails.
#   CAIRN_RT_ONLY=REGEX   check only the artifacts whose id matches
#   CAIRN_RT_TABLE=FILE   write the table there too, in Markdown
#   CAIRN_RT_LOG_LINES=N  lines of each failed cell's log to print (12)
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/realtools-lib.sh"
rt_private_namespace "$@"
step() { echo "--- $(date +%T) $*"; }
rt_need unshare findmnt python3 setfattr mknod umoci skopeo buildah podman containerd ctr
rt_setup
only=${CAIRN_RT_ONLY:-.}
A=$T/art
mkdir -p "$A"

# The artifacts: ID -> what to import, the name it should get, the listing
# of the tool's own unpack, the artifact to read digests from (and its ref).
declare -A A_IMPORT A_NAME A_LIST A_SRC A_SRCREF
artifact() {
    A_IMPORT[$1]=$2 A_NAME[$1]=$3 A_LIST[$1]=$4 A_SRC[$1]=$5 A_SRCREF[$1]=${6:-}
    ARTIFACTS+=("$1")
}
ARTIFACTS=()

step "umoci: init, new, config, four inserts (root entry '/', no end blocks, whiteout, opaque)"
rt_make_umoci "$A/umoci" u
rt_umoci_list "$A/umoci:u" "$A/umoci.list"
grep -q '^etc/e .*user.k=' "$A/umoci.list" && grep -q '^usr/lib/l ' "$A/umoci.list" && ! grep -q '^usr/bin' "$A/umoci.list" \
    && ! grep -q '^etc/e2' "$A/umoci.list" || die "umoci's unpack lacks what the image holds: $(cat "$A/umoci.list")"
artifact umoci-oci "$A/umoci" u "$A/umoci.list" "$A/umoci"
# The same without the root entry: the layers still end without end blocks.
rt_make_umoci "$A/umoci-sub" u /srv/app
rt_umoci_list "$A/umoci-sub:u" "$A/umoci-sub.list"
grep -q '^srv/app/etc/e ' "$A/umoci-sub.list" || die "umoci's unpack lacks srv/app: $(cat "$A/umoci-sub.list")"
artifact umoci-no-root-entry "$A/umoci-sub" u "$A/umoci-sub.list" "$A/umoci-sub"

step "buildah: from scratch, copy, mount, commit: three layers, in OCI and Docker formats"
rt_make_buildah rt-oci oci
rt_make_buildah rt-docker docker
rt_buildah_list localhost/rt-oci:latest "$A/buildah.list"
rt_buildah_list localhost/rt-docker:latest "$A/buildah-docker.list"
grep -q '^data/a .*1234:5678 .*user.color=.*links=data/a,data/hard' "$A/buildah.list" && grep -q '^usr/bin/x 0o104750' "$A/buildah.list" \
    && grep -q '^opq/new' "$A/buildah.list" && ! grep -qE '^(gone|opq/old|data/tmp)' "$A/buildah.list" \
    || die "buildah's mount lacks what the image holds: $(cat "$A/buildah.list")"
rt_buildah push -q localhost/rt-oci:latest "oci:$A/buildah-oci:rt"
rt_buildah push -q localhost/rt-oci:latest "oci-archive:$A/buildah.oci.tar:localhost/rt-oci:latest"
rt_buildah push -q localhost/rt-oci:latest "docker-archive:$A/buildah.docker.tar:localhost/rt-oci:latest"
rt_buildah push -q --compression-format zstd localhost/rt-oci:latest "oci:$A/buildah-zstd:rt"
rt_buildah push -q localhost/rt-docker:latest "docker-archive:$A/buildah-dockerfmt.docker.tar:localhost/rt-docker:latest"
mkdir "$A/buildah-docker-dir"
tar -C "$A/buildah-docker-dir" -xf "$A/buildah.docker.tar"
grep -q 'tar+zstd' "$A/buildah-zstd/blobs/sha256/$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"][7:])' "$A/buildah-zstd/index.json")" \
    || die "buildah push --compression-format zstd wrote no zstd layer"
artifact buildah-oci "$A/buildah-oci" rt "$A/buildah.list" "$A/buildah-oci"
artifact buildah-oci-archive "$A/buildah.oci.tar" localhost/rt-oci:latest "$A/buildah.list" "$A/buildah.oci.tar"
artifact buildah-docker-archive "$A/buildah.docker.tar" localhost/rt-oci:latest "$A/buildah.list" "$A/buildah.docker.tar"
artifact buildah-docker-dir "$A/buildah-docker-dir" localhost/rt-oci:latest "$A/buildah.list" "$A/buildah-docker-dir"
artifact buildah-zstd "$A/buildah-zstd" rt "$A/buildah.list" "$A/buildah-zstd"
artifact buildah-dockerfmt-archive "$A/buildah-dockerfmt.docker.tar" localhost/rt-docker:latest "$A/buildah-docker.list" "$A/buildah-dockerfmt.docker.tar"

step "podman: save as docker-archive, oci-archive, oci-dir"
rt_podman save -q --format docker-archive -o "$A/podman.docker.tar" localhost/rt-oci:latest
rt_podman save -q --format oci-archive -o "$A/podman.oci.tar" localhost/rt-oci:latest
rt_podman save -q --format oci-dir -o "$A/podman-oci" localhost/rt-oci:latest
rt_podman_list localhost/rt-oci:latest "$A/podman.list"
diff -u "$A/buildah.list" "$A/podman.list" || die "podman and buildah mount the same image differently"
artifact podman-docker-archive "$A/podman.docker.tar" localhost/rt-oci:latest "$A/podman.list" "$A/podman.docker.tar"
artifact podman-oci-archive "$A/podman.oci.tar" localhost/rt-oci:latest "$A/podman.list" "$A/podman.oci.tar"
artifact podman-oci-dir "$A/podman-oci" localhost/rt-oci:latest "$A/podman.list" "$A/podman-oci"

step "skopeo: copies as docker-archive, v2s2 (of umoci's and of buildah's), oci-archive, a layout of two images named with '/'"
skopeo copy -q "oci:$A/umoci:u" "docker-archive:$A/skopeo.docker.tar:example.com/team/app:1.0"
skopeo copy -q --format v2s2 "oci:$A/umoci:u" "oci:$A/skopeo-v2s2:u"
skopeo copy -q --format v2s2 "oci:$A/buildah-oci:rt" "oci:$A/skopeo-v2s2-gzip:rt"
skopeo copy -q "oci:$A/umoci:u" "oci-archive:$A/skopeo.oci.tar:example.com/team/app:1.0"
skopeo copy -q "oci:$A/umoci:u" "oci:$A/skopeo-named:example.com/team/app:1.0"
skopeo copy -q "oci:$A/buildah-oci:rt" "oci:$A/skopeo-named:example.com/team/other:2.0"
artifact skopeo-docker-archive "$A/skopeo.docker.tar" example.com/team/app:1.0 "$A/umoci.list" "$A/skopeo.docker.tar"
artifact skopeo-v2s2 "$A/skopeo-v2s2" u "$A/umoci.list" "$A/skopeo-v2s2"
artifact skopeo-v2s2-gzip "$A/skopeo-v2s2-gzip" rt "$A/buildah.list" "$A/skopeo-v2s2-gzip"
# skopeo 1.9 writes a v2s2 manifest into a layout but finds only OCI
# manifests in a layout's index by ref: it reads back its own copy only as
# the layout's lone image (oci:DIR).
SKOPEO_READS_V2S2_LAYOUT=
skopeo inspect --raw "oci:$A/skopeo-v2s2-gzip:rt" >/dev/null 2>&1 && SKOPEO_READS_V2S2_LAYOUT=1
artifact skopeo-oci-archive "$A/skopeo.oci.tar" example.com/team/app:1.0 "$A/umoci.list" "$A/skopeo.oci.tar"
artifact skopeo-named-ref "$A/skopeo-named:example.com/team/other:2.0" example.com/team/other:2.0 \
    "$A/buildah.list" "$A/skopeo-named" example.com/team/other:2.0

step "containerd: ctr images import (the Docker-format archive), ctr images export"
rt_containerd_start
CONTAINERD_NAMESPACE=rt-make rt_ctr images import "$A/buildah-dockerfmt.docker.tar" >/dev/null
CONTAINERD_NAMESPACE=rt-make rt_ctr images export "$A/ctr.tar" localhost/rt-docker:latest
CONTAINERD_NAMESPACE=rt-make rt_ctr_list localhost/rt-docker:latest "$A/ctr.list"
rt_digests "$A/ctr.tar" >"$A/ctr.check"
grep -q 'application/vnd.docker.image.rootfs.diff.tar$' "$A/ctr.check" || die "ctr export wrote no Docker layer type"
tar -tf "$A/ctr.tar" | grep -x manifest.json >/dev/null || die "ctr export wrote no manifest.json"
diff -u "$A/buildah-docker.list" "$A/ctr.list" || die "containerd and buildah unpack the same image differently"
artifact ctr-export "$A/ctr.tar" localhost/rt-docker:latest "$A/ctr.list" "$A/ctr.tar" localhost/rt-docker:latest

# Not a skip: scripts/deps unpacks Debian's docker.io, and a docker column
# that quietly went n/a would hide that `docker load` broke.
rt_have_dockerd || die "no dockerd: scripts/deps unpacks Debian's docker.io (its docker.io@unpacked row)"
step "docker: load the Docker-format archive, save it (the legacy <id>/layer.tar layout)"
rt_dockerd_start
rt_docker load -q -i "$A/buildah-dockerfmt.docker.tar" >/dev/null
rt_docker save -o "$A/docker.tar" localhost/rt-docker:latest
artifact docker-save "$A/docker.tar" localhost/rt-docker:latest "$A/buildah-docker.list" "$A/docker.tar"

for id in "${ARTIFACTS[@]}"; do
    rt_digests "${A_SRC[$id]}" ${A_SRCREF[$id]:+"${A_SRCREF[$id]}"} >"$A/$id.digests" \
        || die "$id: cannot read the artifact's own digests"
done

# --- the checks, one function a column -------------------------------------
X() { echo "$T/c/$1"; }
dig() { sed -n "s/^$2 //p" "$A/$1.digests" | head -1; }
has_manifest() { grep -q '^manifest ' "$A/$1.digests"; }
top_of() { cairn -C "$(X "$1")/state" image show "${A_NAME[$1]}" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["top"])'; }
index_ref() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"])' "$1/index.json"; }

check_import() {
    local id=$1 x s show
    x=$(X "$id") s=$(X "$id")/state
    mkdir -p "$x"
    cairn init "$s" >/dev/null
    cairn -C "$s" image import "${A_IMPORT[$id]}"
    show=$(cairn -C "$s" image show "${A_NAME[$id]}" --json) \
        || die "no image named ${A_NAME[$id]} after the import; images: $(cairn -C "$s" image ls | tail -n +2 | cut -d' ' -f1 | tr '\n' ' ')"
    python3 - "$show" "$(dig "$id" chain)" "$(dig "$id" manifest)" <<'PY' || exit 1
import json, sys
show, chain, manifest = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
if show["top"] != chain:
    sys.exit(f"FAIL: the top is {show['top']}, the ChainID of the config's DiffIDs is {chain}")
if manifest and show["manifest"] != manifest:
    sys.exit(f"FAIL: the manifest is {show['manifest']}, the artifact's is {manifest}")
PY
}

check_checkout() {
    local id=$1 top
    top=$(top_of "$id")
    cairn -C "$(X "$id")/state" snapshot checkout "$top" "$(X "$id")/co"
    rt_same_tree "${A_LIST[$id]}" "$(X "$id")/co" "the checkout"
}

check_copy() {
    local id=$1 top
    top=$(top_of "$id")
    cairn -C "$(X "$id")/state" snapshot checkout "$top" "$(X "$id")/cc" --copy
    rt_same_tree "${A_LIST[$id]}" "$(X "$id")/cc" "the checkout --copy"
}

# The digests of an export against the artifact's: config, layers, DiffIDs,
# chain always; the manifest when the artifact had one.
same_digests() {
    local id=$1 exp=$2 what=$3 keys='config|diffid|chain' d
    has_manifest "$id" && keys="manifest|$keys"
    rt_digests "$exp" >"$exp.digests"
    d=$(diff <(grep -E "^($keys) " "$A/$id.digests"; sed -n 's/^layer \([^ ]*\).*/layer \1/p' "$A/$id.digests") \
        <(grep -E "^($keys) " "$exp.digests"; sed -n 's/^layer \([^ ]*\).*/layer \1/p' "$exp.digests")) \
        || die "$what has other digests: $(echo "$d" | grep '^[<>]' | head -2 | tr '\n' ' ')"
}

check_export() {
    local id=$1 x s rc=0
    x=$(X "$id") s=$(X "$id")/state
    cairn -C "$s" image export "${A_NAME[$id]}" "$x/exp" || rc=1
    cairn -C "$s" image export "${A_NAME[$id]}" "$x/exp.tar" --format oci-archive || rc=1
    [ $rc = 0 ] || die "an export failed (above)"
    same_digests "$id" "$x/exp" "the layout export"
    same_digests "$id" "$x/exp.tar" "the oci-archive export"
}

check_skopeo() {
    local id=$1 x ref src raw
    x=$(X "$id")
    [ -f "$x/exp/index.json" ] || rt_blocked "no layout export"
    ref=$(index_ref "$x/exp")
    src=oci:$x/exp:$ref
    # skopeo finds a Docker manifest in a layout only as its lone image, not by its ref.
    grep -q '^mediatype application/vnd.docker' "$x/exp.digests" && [ -z "$SKOPEO_READS_V2S2_LAYOUT" ] && src=oci:$x/exp
    raw=$(skopeo inspect --raw "$src" | sha256sum | cut -d' ' -f1)
    [ "sha256:$raw" = "$(sed -n 's/^manifest //p' "$x/exp.digests")" ] || die "skopeo reads manifest sha256:$raw"
    skopeo copy -q "$src" "oci:$x/skopeo-copy:$ref"
    [ "$(rt_digests "$x/skopeo-copy" "$ref" | sed -n 's/^chain //p')" = "$(dig "$id" chain)" ] \
        || die "skopeo's copy of the export has another chain"
}

check_umoci() {
    local id=$1 x ref
    x=$(X "$id")
    [ -f "$x/exp/index.json" ] || rt_blocked "no layout export"
    grep -q '^mediatype application/vnd.docker' "$x/exp.digests" && rt_na "umoci 0.4.7 reads OCI manifests only (this one is Docker's)"
    grep -q '+zstd$' "$x/exp.digests" && rt_na "umoci 0.4.7 has no zstd"
    ref=$(index_ref "$x/exp")
    umoci unpack --image "$x/exp:$ref" "$x/umoci" >/dev/null
    rt_same_tree "${A_LIST[$id]}" "$x/umoci/rootfs" "umoci's unpack of the export"
}

check_ctr() {
    local id=$1 x image
    x=$(X "$id")
    [ -f "$x/exp.tar" ] || rt_blocked "no oci-archive export"
    export CONTAINERD_NAMESPACE=rt-$id
    rt_ctr images import --digests "$x/exp.tar"
    image=$(rt_ctr images ls | awk -v d="$(sed -n 's/^manifest //p' "$x/exp.tar.digests")" '$3 == d { print $1; exit }')
    [ -n "$image" ] || die "ctr holds no image with the export's manifest: $(rt_ctr images ls | tail -n +2)"
    rt_ctr_list "$image" "$x/ctr.list"
    diff -u "${A_LIST[$id]}" "$x/ctr.list" || die "containerd's mount of the export differs from the reference"
}

check_podman() {
    local id=$1 x out name facts m
    x=$(X "$id")
    [ -f "$x/exp.tar" ] || rt_blocked "no oci-archive export"
    # podman refuses a run root longer than 50 characters: a short one.
    local p
    p=$(mktemp -d "$RT/pXXXXXX")
    out=$(rt_reader_podman "$p" load -i "$x/exp.tar")
    echo "$out"
    name=$(echo "$out" | sed -n 's/^Loaded image[^:]*: *//p' | head -1 | cut -d, -f1)
    [ -n "$name" ] || die "podman load said: $out"
    facts=$(rt_reader_podman "$p" image inspect "$name" --format '{{.Id}} {{range .RepoDigests}}{{.}} {{end}}')
    [[ "sha256:$facts" == "$(dig "$id" config) "* ]] || die "podman's image id is not the config digest: $facts"
    [[ "$facts" == *"@$(sed -n 's/^manifest //p' "$x/exp.tar.digests") "* ]] \
        || die "podman does not know the export's manifest digest: $facts"
    m=$(rt_reader_podman "$p" image mount "$name")
    rt_same_tree "${A_LIST[$id]}" "$m" "podman's mount of the export"
    rt_reader_podman "$p" image unmount "$name" >/dev/null
}

check_docker_archive() {
    local id=$1 x cfg
    x=$(X "$id")
    [ -f "$x/exp.tar" ] || rt_blocked "no oci-archive export"
    cfg=$(skopeo inspect --config --raw "docker-archive:$x/exp.tar" | sha256sum | cut -d' ' -f1)
    [ "sha256:$cfg" = "$(dig "$id" config)" ] || die "skopeo reads config sha256:$cfg from the archive as a docker-archive"
    skopeo copy -q "docker-archive:$x/exp.tar" "oci:$x/from-docker-archive:x"
    [ "$(rt_digests "$x/from-docker-archive" x | sed -n 's/^chain //p')" = "$(dig "$id" chain)" ] \
        || die "the archive read as a docker-archive has another chain"
}

check_docker() {
    local id=$1 x cfg
    x=$(X "$id")
    [ -f "$x/exp.tar" ] || rt_blocked "no oci-archive export"
    grep -q '+zstd$' "$x/exp.tar.digests" && rt_na "docker 20.10 loads no zstd layer"
    cfg=$(dig "$id" config)
    rt_docker load -i "$x/exp.tar"
    [ "$(rt_docker image inspect "$cfg" --format '{{.Id}}')" = "$cfg" ] || die "docker holds no image $cfg after the load"
    rt_docker rmi -f "$cfg" >/dev/null
}

# The read-back checks run once for each distinct export: an artifact whose
# export has the same manifest, config and layers as one checked before (the
# same image in another container format) takes that one's cells.
readback="skopeo umoci ctr podman docker-archive docker"
declare -A SEEN_EXPORT
for id in "${ARTIFACTS[@]}"; do
    [[ $id =~ $only ]] || continue
    rt_cell "$id" import check_import
    for st in checkout copy export $readback; do
        if [ "${RT_STATUS[$id|import]}" != ok ]; then
            RT_STATUS[$id|$st]=blocked RT_MSG[$id|$st]="the import failed"
            [[ " ${RT_STEPS[*]} " == *" $st "* ]] || RT_STEPS+=("$st")
            continue
        fi
        if [[ " $readback " == *" $st "* ]] && [ -f "$(X "$id")/exp.digests" ]; then
            key=$(grep -v '^name ' "$(X "$id")/exp.digests" | sha256sum | cut -c1-16)
            if [ -n "${SEEN_EXPORT[$key]:-}" ] && [ "${SEEN_EXPORT[$key]}" != "$id" ]; then
                rt_cell_as "$id" "$st" "${SEEN_EXPORT[$key]}"
                continue
            fi
            SEEN_EXPORT[$key]=$id
        fi
        rt_cell "$id" "$st" "check_${st//-/_}"
    done
done

echo
rt_table
[ -z "${CAIRN_RT_TABLE:-}" ] || rt_table_md >"$CAIRN_RT_TABLE"
if rt_failed; then
    echo
    for id in "${RT_IDS[@]}"; do
        for st in "${RT_STEPS[@]}"; do
            [ "${RT_STATUS[$id|$st]:-}" = FAIL ] || continue
            echo "FAIL $id $st: ${RT_MSG[$id|$st]}"
            if [ -f "$RT/cells/$id.$st.log" ]; then
                tail -n "${CAIRN_RT_LOG_LINES:-12}" "$RT/cells/$id.$st.log" | sed 's/^/    /'
            fi
        done
    done
    die "some artifacts made by real tools are not taken, checked out or exported as the tools expect (table above)"
fi
