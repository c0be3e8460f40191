/* jobtypes.h -- the job types a worker serves (jobtypes.c). */
#ifndef SL_JOBTYPES_H
#define SL_JOBTYPES_H

#include <libpq-fe.h>
#include <stddef.h>

#include "config.h"
#include "worker_int.h"

/* Finds each job type's handler, loads its schema and makes its role and
 * statement_timeout statements into out[0..cfg->n_jobs) (zeroed by the
 * caller; NULL: only check that they can be made). Returns 0, or -1 with
 * `file:line: what is wrong` in errbuf (out then holds what was made:
 * release it). */
int sl_jobtypes_resolve(const struct sl_config *cfg, struct sl_job_type_rt *out, char *errbuf,
                        size_t errbuf_size);

/* Frees types[0..n) and the array. NULL is a no-op. */
void sl_jobtypes_release(struct sl_job_type_rt *types, size_t n);

/* Checks each SQL handler's function on conn: an error for `-n` (warn 0),
 * a warning at start (warn 1: a migration may come later; until then its
 * jobs wait). Returns the number of problems; the first is in errbuf as
 * `file:line: ...`. */
int sl_jobtypes_check_sql(const struct sl_config *cfg, const struct sl_job_type_rt *types, PGconn *conn,
                          int warn, char *errbuf, size_t errbuf_size);

#endif
