/* serve.c: cairn_containerd_serve(), the snapshots and content services of
 * one state on one socket, and the containerd config that uses them. */
#include "containerd/containerd-private.h"

#include <stdarg.h>

static void log_cb(void *ud, const char *msg)
{
    const cairn_containerd_serve_options *o = ud;
    o->log(o->log_userdata, msg);
}

int cairn_containerd_serve(cairn_state *st, const cairn_containerd_serve_options *opts,
                           cairn_error *err)
{
    if (!opts)
        return cairn__err(err, -EINVAL, "serve containerd: no options");
    int r = cairn__opts_version(opts->version, CAIRN_CONTAINERD_SERVE_OPTIONS_VERSION,
                                "serve containerd", err);
    if (r < 0)
        return r;
    if (!opts->socket || !opts->socket[0])
        return cairn__err(err, -EINVAL, "serve containerd: no socket path");
    r = cairn__check_writable(st, err);
    if (r < 0)
        return r;
    /* One table of both services' methods. */
    size_t ns = 0, nc = 0;
    while (cairn__ctrd_snapshot_methods[ns].path)
        ns++;
    while (cairn__ctrd_content_methods[nc].path)
        nc++;
    cairn__grpc_method *methods = calloc(ns + nc + 1, sizeof(*methods));
    if (!methods)
        return cairn__err(err, -ENOMEM, "out of memory");
    memcpy(methods, cairn__ctrd_snapshot_methods, ns * sizeof(*methods));
    memcpy(methods + ns, cairn__ctrd_content_methods, nc * sizeof(*methods));
    cairn__ctrd x = {.st = st};
    cairn__grpc_server *s = NULL;
    r = cairn__grpc_server_new(&s, methods, &x, err);
    if (r == 0 && opts->log)
        cairn__grpc_set_log(s, log_cb, (void *)opts);
    if (r == 0)
        r = cairn__grpc_listen(s, opts->socket, err);
    if (r == 0)
        r = cairn__grpc_run(s, opts->stop_fd, false, err);
    if (s && opts->stats) {
        cairn__grpc_stats gs;
        cairn__grpc_stats_get(s, &gs);
        x.stats.connections = gs.connections;
        x.stats.calls = gs.calls;
        x.stats.errors = gs.errors;
        *opts->stats = x.stats;
    }
    cairn__grpc_server_free(s);
    cairn__ctrd_content_free(&x);
    free(methods);
    return r;
}

char *cairn_containerd_config(const char *socket, const char *name)
{
    char *out = NULL;
    /* The built-in content store is disabled: containerd's metadata takes
     * one content plugin, any of those registered, so the proxy must be the
     * only one. */
    if (asprintf(&out,
                 "version = 2\n"
                 "disabled_plugins = [\"io.containerd.content.v1.content\"]\n"
                 "\n"
                 "[proxy_plugins]\n"
                 "  [proxy_plugins.%s]\n"
                 "    type = \"snapshot\"\n"
                 "    address = \"%s\"\n"
                 "  [proxy_plugins.%s-content]\n"
                 "    type = \"content\"\n"
                 "    address = \"%s\"\n",
                 name, socket, name, socket) < 0)
        return NULL;
    return out;
}
