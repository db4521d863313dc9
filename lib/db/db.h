/* db/db.h: the SQLite files of states, opened, checked and migrated. Nothing
 * here knows of a state: core/ owns a state's layers, their statement
 * caches and transactions. */
#ifndef CAIRN_DB_H
#define CAIRN_DB_H

#include "util/util.h"

#define CAIRN_SCHEMA_VERSION 2

/* Migrate the schema of a writable database to CAIRN_SCHEMA_VERSION; create
 * it (from version 0) only when `create` (cairn init's new file): any other
 * database without a schema is refused, CAIRN_E_CORRUPT. */
CAIRN_INTERNAL int cairn__db_migrate(sqlite3 *db, const char *path, bool create,
                                     cairn_error *err);
/* Read the schema version of a database (PRAGMA user_version). */
CAIRN_INTERNAL int cairn__db_schema(sqlite3 *db);
/* Open a database file: writable (WAL), read-only, or immutable (frozen
 * states and lowers: no locks, nothing written beside it); CREATE is
 * writable and accepts the empty file cairn init has just made. Every other
 * mode refuses a file that is not a cairn database (empty, foreign, no
 * state id): CAIRN_E_CORRUPT, naming the file. */
enum { CAIRN__DB_RW, CAIRN__DB_RO, CAIRN__DB_IMMUTABLE, CAIRN__DB_CREATE };
CAIRN_INTERNAL int cairn__db_open(const char *path, int mode, sqlite3 **out, cairn_error *err);
/* The SQLite URI of a database file opened read-only ("file:PATH?mode=ro"),
 * and immutable (no locks, nothing written beside it) when asked; the path
 * escaped, so a '?', '#' or '%' in it stays part of it. malloc'd, or NULL. */
CAIRN_INTERNAL char *cairn__db_uri(const char *path, bool immutable);
/* A new database file at `path` (refused when it exists) holding a copy of
 * `src` at one point in time (SQLite's backup API in one step: one read
 * transaction of src). On success *out is the copy, open read-write. */
CAIRN_INTERNAL int cairn__db_copy(sqlite3 *src, const char *path, sqlite3 **out, cairn_error *err);
/* Run SQL without results on db. */
CAIRN_INTERNAL int cairn__db_exec(sqlite3 *db, const char *sql, cairn_error *err);

#endif
