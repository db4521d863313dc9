/* cairn/containerd.h: a state as containerd's snapshotter and content store.
 *
 * cairn_containerd_serve() answers containerd's snapshots and content gRPC
 * services (containerd 1.6's API) on a unix socket, for containerd's
 * proxy_plugins. containerd's backend keys ("<namespace>/<n>/<name>") are
 * kept in a table of their own; every committed snapshot is stored under
 * its cairn ChainID (its diff's DiffID, computed at commit as
 * cairn_snapshot_commit() does), and the name containerd gave it (its
 * ChainID as containerd computes it from the image) is mapped to that in a
 * table that merges, so states filled by different containerds merge.
 *
 * A Prepare labelled containerd.io/snapshot.ref = a ChainID that the state or
 * a lower holds answers AlreadyExists (as remote snapshotters do): containerd
 * unpacks nothing. Blobs of lowers are found by Info, so a pull fetches only
 * what the stack lacks. Only this state's own objects are ever listed to
 * containerd or removed by it; a lower is never touched.
 */
#ifndef CAIRN_CONTAINERD_H
#define CAIRN_CONTAINERD_H

#include <stdint.h>
#include <cairn/error.h>
#include <cairn/state.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cairn_containerd_stats {
    uint64_t connections; /* accepted */
    uint64_t calls;       /* gRPC calls */
    uint64_t errors;      /* calls answered with an error status */
    uint64_t adopted;     /* Prepares answered AlreadyExists from what the stack holds */
    uint64_t commits;     /* snapshots committed */
    uint64_t blobs;       /* blobs written */
} cairn_containerd_stats;

typedef struct cairn_containerd_serve_options {
    unsigned version;    /* CAIRN_CONTAINERD_SERVE_OPTIONS_VERSION */
    const char *socket;  /* the unix socket to listen on (required) */
    int stop_fd;         /* serve until this fd is readable (a pipe, a signalfd); -1: forever */
    /* Log lines (errors of calls, clients that went away); NULL: none.
     * Called from the serving thread. */
    void (*log)(void *userdata, const char *msg);
    void *log_userdata;
    cairn_containerd_stats *stats; /* filled when serving ends (may be NULL) */
} cairn_containerd_serve_options;
#define CAIRN_CONTAINERD_SERVE_OPTIONS_VERSION 1
#define CAIRN_CONTAINERD_SERVE_OPTIONS_INIT                                                        \
    {.version = CAIRN_CONTAINERD_SERVE_OPTIONS_VERSION, .stop_fd = -1}

/* Serve `st` until opts->stop_fd is readable: then the connections are told
 * to go away, the socket is removed and 0 returned. The state handle is used
 * by the serving thread only, for as long as it serves. A socket path where
 * a live server listens is -EADDRINUSE; a stale socket is replaced. */
CAIRN_EXPORT int cairn_containerd_serve(cairn_state *st, const cairn_containerd_serve_options *opts,
                                        cairn_error *err);

/* The containerd config (TOML, version 2) that uses the server on `socket`
 * as snapshotter and content store under the plugin name `name`
 * (malloc'd; NULL when out of memory). */
CAIRN_EXPORT char *cairn_containerd_config(const char *socket, const char *name);

#ifdef __cplusplus
}
#endif
#endif
