/* cairn/cairn.h: the whole public API of libcairn.
 *
 * One time unit: every time in a public struct is in unix seconds and every
 * duration in seconds (each field says so). The one wait given in
 * milliseconds is cairn_state_set_timeout()'s, as SQLite's busy timeout. */
#ifndef CAIRN_CAIRN_H
#define CAIRN_CAIRN_H

#include <cairn/error.h>
#include <cairn/state.h>
#include <cairn/store.h>
#include <cairn/fsck.h>
#include <cairn/snapshot.h>
#include <cairn/layer.h>
#include <cairn/image.h>
#include <cairn/record.h>
#include <cairn/lease.h>
#include <cairn/gc.h>
#include <cairn/volume.h>
#include <cairn/merge.h>
#include <cairn/remote.h>
#include <cairn/containerd.h>
#include <cairn/containerd-import.h>
#include <cairn/pool.h>

#define CAIRN_VERSION_STRING "0.1.0"

#endif
