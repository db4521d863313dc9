/* core/fsck.h: what the checkers of each module share; gc/fsck.c runs them. */
#ifndef CAIRN_FSCK_PRIVATE_H
#define CAIRN_FSCK_PRIVATE_H

#include "core/core.h"

typedef struct cairn__fsck {
    cairn_state *st;
    cairn_fsck_options opts;
    cairn_fsck_fn fn;
    void *ud;
    uint64_t problems;
    uint64_t done, total; /* progress: checkers add to total as they learn it */
    int stopped;          /* CAIRN_E_USER once the progress callback asked to stop */
} cairn__fsck;

/* Report one problem. `action` is what repair did ("" or NULL for none). */
CAIRN_INTERNAL void cairn__fsck_report(cairn__fsck *f, const char *kind, const char *name,
                                       const char *problem, const char *action, const char *fmt,
                                       ...) CAIRN_PRINTF(6, 7);
/* One object checked. CAIRN_E_USER (kept in f->stopped, in err) when the
 * progress callback asks to stop: the long checkers (blobs, snapshots) stop
 * at once, the others at their end, and the run returns it. */
CAIRN_INTERNAL int cairn__fsck_tick(cairn__fsck *f, cairn_error *err);
/* Move dirfd/name to quarantine/<tag>.<name>.<time> (never deletes). */
CAIRN_INTERNAL int cairn__fsck_quarantine(cairn__fsck *f, int dirfd, const char *name,
                                          const char *tag, cairn_error *err);

/* Checkers of other modules, listed in fsck.c's checkers[]. */
CAIRN_INTERNAL int cairn__fsck_snapshots(cairn__fsck *f, cairn_error *err);
/* The images checker (lib/image.c), listed in fsck.c's checkers[]. */
CAIRN_INTERNAL int cairn__fsck_images(cairn__fsck *f, cairn_error *err);

/* Report each entry of dirfd (STATE/dirname) that is not named like an
 * object, or that no row of the layers sharing this directory names.
 * named_sql: "SELECT 1 FROM <table> WHERE <name column> = ?" (a literal).
 * Names in `skip` (may be NULL; "sha256:<hex>") are accounted for elsewhere. */
CAIRN_INTERNAL int cairn__fsck_unreferenced(cairn__fsck *f, int dirfd, const char *dirname,
                                            const char *kind, const char *named_sql,
                                            const cairn__strset *skip, cairn_error *err);

#endif
