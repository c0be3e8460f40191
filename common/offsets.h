/* offsets.h -- per-partition tracker of in-flight offsets.
 *
 * Messages of one partition are added in increasing offset order as they are
 * fetched (gaps are normal: compaction, transaction markers) and finish in any
 * order. The committable offset is the lowest offset still unfinished, or one
 * past the highest offset added when nothing is unfinished: everything below
 * it is done, so it is what the consumer may store and commit (Kafka's
 * "next offset to read"). Memory is proportional to the offsets in flight, not
 * to the distance between them, so a long-running job cannot make it grow
 * beyond the in-flight limit (unlike commit-metadata bitmaps).
 *
 * Not thread-safe: the consumer thread owns every tracker.
 */
#ifndef SL_OFFSETS_H
#define SL_OFFSETS_H

#include <stddef.h>
#include <stdint.h>

typedef struct sl_offsets sl_offsets_t;

/* Returns a new, empty tracker, or NULL when out of memory. */
sl_offsets_t *sl_offsets_new(void);

/* Frees the tracker; NULL is a no-op. */
void sl_offsets_destroy(sl_offsets_t *t);

/* Records `offset` as in flight. Offsets must be added in strictly increasing
 * order; returns -1 (and changes nothing) for an offset not above the last one
 * added, or when out of memory, 0 otherwise. */
int sl_offsets_add(sl_offsets_t *t, int64_t offset);

/* Marks an in-flight offset done. Returns 0, or -1 if `offset` is not in
 * flight (never added, or already done). */
int sl_offsets_done(sl_offsets_t *t, int64_t offset);

/* The offset to commit: the lowest unfinished one, or last added + 1 when
 * none is unfinished, or -1 when nothing was ever added. */
int64_t sl_offsets_committable(const sl_offsets_t *t);

/* Number of offsets added and not yet done. */
size_t sl_offsets_in_flight(const sl_offsets_t *t);

/* Forgets everything in flight (for a revoked or lost partition) and starts
 * empty, as after sl_offsets_new(). */
void sl_offsets_reset(sl_offsets_t *t);

#endif
