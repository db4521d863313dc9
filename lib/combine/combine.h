/* combine/combine.h: what the folders above combine/ (remote/) use of the
 * merge machinery without a whole state: the merge rules applied to rows of
 * a database file; the lowers of a new stack, no lower opened. */
#ifndef CAIRN_COMBINE_H
#define CAIRN_COMBINE_H

#include "core/core.h"

/* Upsert every merged table's rows of the database at `src_path` (opened
 * read-only, immutable) into the main database of `db`, each by its merge
 * rule (merge.c, merge_tables[]), in one transaction. No object is checked:
 * the caller answers for the objects the rows name. Local tables (meta,
 * active, leases) are left alone. Returns the number of rows changed. */
CAIRN_INTERNAL int cairn__merge_db_rows(sqlite3 *db, const char *src_path, cairn_error *err);

/* cairn_stack_add() for a state just made, with no lowers yet (so none of
 * the lowers can stack on it): each lower checked frozen by its identity
 * file only, no database opened; a lower's path is recorded resolved.
 * -EINVAL when dir already has lowers or is frozen. */
CAIRN_INTERNAL int cairn__stack_add_new(const char *dir, const char *const *lowers, size_t n,
                                        cairn_error *err);

#endif
