/* cairn/lease.h: leases, the pins that keep objects from garbage collection.
 *
 * An engine takes a lease per session and adds to it what the session uses
 * or is about to write: blobs, snapshots (committed, by chain id), cache
 * records (by key: all of the key's results) and volumes (all their
 * versions). A resource may be added before its object exists, which is how
 * a writer protects what it is about to publish. A lease that has expired is
 * ignored by gc (and removed by it); one with no expiry lasts until removed.
 *
 * Leases are local to a state: they are never merged and lowers' are not
 * read.
 */
#ifndef CAIRN_LEASE_H
#define CAIRN_LEASE_H

#include <stdint.h>
#include <cairn/error.h>
#include <cairn/state.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CAIRN_LEASE_ID_MAX 128
#define CAIRN_LEASE_NAME_MAX 255

typedef struct cairn_lease_info {
    char id[CAIRN_LEASE_ID_MAX + 1];
    int64_t created; /* unix seconds */
    int64_t expires; /* unix seconds; 0: never */
    uint64_t resources;
} cairn_lease_info;

/* Create a lease. `id`: letters, digits and ".-_" (up to CAIRN_LEASE_ID_MAX),
 * or NULL for a random one. `ttl`: seconds until it expires, 0 for never.
 * `out_id` (CAIRN_LEASE_ID_MAX + 1 bytes, may be NULL) receives the id.
 * -EEXIST when a lease of that id exists. */
CAIRN_EXPORT int cairn_lease_create(cairn_state *st, const char *id, int64_t ttl, char *out_id,
                                    cairn_error *err);
/* Push the expiry to now + ttl (0: never). -ENOENT when there is no such lease. */
CAIRN_EXPORT int cairn_lease_renew(cairn_state *st, const char *id, int64_t ttl,
                                   cairn_error *err);
/* Remove a lease and its resources. -ENOENT when there is no such lease. */
CAIRN_EXPORT int cairn_lease_remove(cairn_state *st, const char *id, cairn_error *err);

/* Kinds of resources: "blob", "snapshot" (names are digests / chain ids),
 * "record" (a cache key), "volume" (a volume name). Returns 1 when added, 0
 * when it was there. */
CAIRN_EXPORT int cairn_lease_resource_add(cairn_state *st, const char *id, const char *kind,
                                          const char *name, cairn_error *err);
/* Returns 1 when removed, 0 when the lease did not hold it. */
CAIRN_EXPORT int cairn_lease_resource_remove(cairn_state *st, const char *id, const char *kind,
                                             const char *name, cairn_error *err);

typedef int (*cairn_lease_fn)(void *userdata, const cairn_lease_info *info);
/* Every lease, expired ones included, sorted by id. */
CAIRN_EXPORT int cairn_lease_list(cairn_state *st, cairn_lease_fn fn, void *userdata,
                                  cairn_error *err);
CAIRN_EXPORT int cairn_lease_get(cairn_state *st, const char *id, cairn_lease_info *out,
                                 cairn_error *err);
typedef int (*cairn_lease_resource_fn)(void *userdata, const char *kind, const char *name);
CAIRN_EXPORT int cairn_lease_resource_list(cairn_state *st, const char *id,
                                           cairn_lease_resource_fn fn, void *userdata,
                                           cairn_error *err);

#ifdef __cplusplus
}
#endif
#endif
