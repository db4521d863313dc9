/* store-private.h: what the store offers the layers above it beside the
 * public cairn/store.h. */
#ifndef CAIRN_STORE_PRIVATE_H
#define CAIRN_STORE_PRIVATE_H

#include "core/core.h"

#include <cairn/store.h>

/* Take into batch b a file its caller wrote and hashed itself (its `size`
 * bytes hash to digest: a fetch verified them), without copying it: renamed
 * from dirfd/name into the state's tmp/, made read-only, published with the
 * batch as a put is. -EXDEV (err set) when it is on another filesystem than
 * the state: put it by its fd instead. On failure the file is where it was. */
CAIRN_INTERNAL int cairn__blob_batch_adopt(cairn_blob_batch *b, int dirfd, const char *name,
                                           int fd, const char *digest, uint64_t size,
                                           const char *media_type, cairn_error *err);

#endif
