# ctrd-config.sh: sourced by the tests and benches that start Debian's
# containerd with its own content store and snapshotters on a private root.
# ctrd_private_config DIR: a config.toml for a containerd whose root, state
# directory and socket (DIR/sock) are all under DIR; no CRI, no /opt, none of
# the snapshotters this machine cannot run.
ctrd_private_config() {
    cat <<EOT
version = 2
root = "$1/root"
state = "$1/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$1/sock"
[ttrpc]
  address = "$1/sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
EOT
}
