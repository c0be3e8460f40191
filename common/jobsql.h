/* jobsql.h -- the statements sluice runs around a job's handler (jobsql.c). */
#ifndef SL_JOBSQL_H
#define SL_JOBSQL_H

#include <libpq-fe.h>
#include <stddef.h>

/* The transaction's own. */
extern const char sl_sql_begin[], sl_sql_commit[], sl_sql_rollback[];
extern const char sl_sql_lock_timeout[];                  /* inside a group, after its first job */
extern const char sl_sql_bounds[];                        /* postgres.pooling: the bounds, SET LOCAL */
extern const char sl_sql_leave_role[], sl_sql_leave_timeout[]; /* after a handler's statement */

/* The ledger's: a job's stored status and result ($1 source, $2 id); a
 * job's outcome ($1 source, $2 id, $3 type, $4 status, $5 result, $6
 * attempts), which returns no row when the job is final already, or, the
 * _or_raise form, raises SQLSTATE SL_SQLSTATE_FINAL then. */
extern const char sl_sql_stored[], sl_sql_record[], sl_sql_record_or_raise[];
/* sl_sql_record_or_raise for several jobs: each parameter an array literal
 * with an element per job. */
extern const char sl_sql_record_many_or_raise[];
#define SL_SQLSTATE_FINAL "SL001"

/* Prepared on every new connection, before any transaction. */
#define SL_SQL_N_FRAMEWORK 8
extern const char *const sl_sql_framework[SL_SQL_N_FRAMEWORK];

/* Checks that the ledger on conn has the shape the statements need (its
 * columns, key and functions), by preparing each of them. Returns 0, or -1
 * with what is wrong in errbuf. Any thread. */
int sl_sql_check_ledger(PGconn *conn, char *errbuf, size_t errbuf_size);

#endif
