/* core/usage.h: the usage of objects and their presence (usage.c). */
#ifndef CAIRN_USAGE_H
#define CAIRN_USAGE_H

#include "core/core.h"

/* Usage rows name a blob or a snapshot by its digest or chain id alone (as
 * the snapshot code does; a blob and a snapshot of the same digest, an
 * uncompressed base layer, share their row), anything else "<kind>:<name>"
 * ("volume:<name>"). */
#define CAIRN__USAGE_NAME_MAX (16 + 256)
CAIRN_INTERNAL int cairn__usage_name(char *out, size_t size, const char *kind, const char *name);
/* Mark an object used now in this state (last_used = max(old, now),
 * hits + `hits`). Writes layer 0 in its own transaction (or the caller's).
 * A read-only state is left alone (returns 0). */
CAIRN_INTERNAL int cairn__usage_mark(cairn_state *st, const char *kind, const char *name,
                                      unsigned hits, cairn_error *err);
/* The merged usage of an object: last_used = max over states and layers,
 * hits = sum over states of the max seen for that state. */
CAIRN_INTERNAL int cairn__usage_get(cairn_state *st, const char *kind, const char *name,
                                    int64_t *last_used, uint64_t *hits, cairn_error *err);

/* Is the object there: a row in some layer and its file or directory in
 * that layer's root? 1 yes, 0 no, < 0 error. *layer (may be NULL) gets the
 * topmost layer that holds it. `kind` is "blob" or "snapshot". */
CAIRN_INTERNAL int cairn__object_present(cairn_state *st, const char *kind, const char *name,
                                         int *layer, cairn_error *err);

#endif
