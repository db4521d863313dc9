// ctrd-pull: pull an image and unpack it the way containerd's own clients
// (CRI, nerdctl) do: containerd's client library with WithPullUnpack, whose
// unpacker labels each layer's Prepare with containerd.io/snapshot.ref, so
// that a snapshotter holding the layer answers AlreadyExists and nothing is
// applied. `ctr images pull` of containerd 1.6 unpacks without that label.
//
// Usage: ctrd-pull ADDRESS SNAPSHOTTER REF   (plain http: a test registry)
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/remotes/docker"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: ctrd-pull ADDRESS SNAPSHOTTER REF")
		os.Exit(2)
	}
	client, err := containerd.New(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "ctrd-pull:", err)
		os.Exit(1)
	}
	defer client.Close()
	ctx := namespaces.WithNamespace(context.Background(), "default")
	resolver := docker.NewResolver(docker.ResolverOptions{PlainHTTP: true})
	img, err := client.Pull(ctx, os.Args[3], containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(os.Args[2]), containerd.WithResolver(resolver))
	if err != nil {
		fmt.Fprintln(os.Stderr, "ctrd-pull:", err)
		os.Exit(1)
	}
	fmt.Println(img.Name(), img.Target().Digest)
}
