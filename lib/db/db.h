/* db/db.h: the SQLite files of states, opened, checked and migrated. Nothing
 * here knows of a state: core/ owns a state's layers, their statement
 * caches and transactions. */
#ifndef CAIRN_DB_H
#define CAIRN_DB_H

#include "util/util.h"

#define CAIRN_SCHEMA_VERSION 1

/* Create or migrate the schema of a freshly opened writable database. */
CAIRN_INTERNAL int cairn__db_migrate(sqlite3 *db, const char *path, cairn_error *err);
/* Read the schema version of a database (PRAGMA user_version). */
CAIRN_INTERNAL int cairn__db_schema(sqlite3 *db);
/* Open a database file: writable (WAL), read-only, or immutable (frozen
 * states and lowers: no locks, nothing written beside it). */
enum { CAIRN__DB_RW, CAIRN__DB_RO, CAIRN__DB_IMMUTABLE };
CAIRN_INTERNAL int cairn__db_open(const char *path, int mode, sqlite3 **out, cairn_error *err);
/* Run SQL without results on db. */
CAIRN_INTERNAL int cairn__db_exec(sqlite3 *db, const char *sql, cairn_error *err);

#endif
