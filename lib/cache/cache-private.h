/* cache-private.h: what the build cache's files share (records, leases,
 * volumes, gc, du, their fsck checkers). */
#ifndef CAIRN_CACHE_PRIVATE_H
#define CAIRN_CACHE_PRIVATE_H

#include "core/core.h"
#include "core/fsck.h"
#include "core/usage.h"

#include "cairn/volume.h"

/* Prune the branches of `keys` (n of them) in layer 0, inside the caller's
 * transaction: a key left with no result and no link to a child (in any
 * layer) loses the links into it, and its parents are pruned the same way.
 * Returns the number of links removed. */
CAIRN_INTERNAL int cairn__record_prune(cairn_state *st, const char *const *keys, size_t n,
                                       cairn_error *err);

/* A lease is live when it never expires (expires == 0) or expires after now. */
#define CAIRN__LEASE_LIVE_SQL "(expires = 0 OR expires > ?)"

/* fsck checkers (lib/fsck.c lists them). */
CAIRN_INTERNAL int cairn__fsck_records(cairn__fsck *f, cairn_error *err);
CAIRN_INTERNAL int cairn__fsck_leases(cairn__fsck *f, cairn_error *err);
CAIRN_INTERNAL int cairn__fsck_volumes(cairn__fsck *f, cairn_error *err);

#endif
