/* sqlhandler.h -- handlers that are a SQL function (handler = "sql:SCHEMA.FUNCTION").
 *
 * See sqlhandler.c for the contract with the function. Not for: built-in or
 * loaded C handlers.
 */
#ifndef SL_SQLHANDLER_H
#define SL_SQLHANDLER_H

#include <stddef.h>
#include <libpq-fe.h>

#include "handler_int.h"

/* Returns a new handler calling `function` ("SCHEMA.FUNCTION", as after the
 * "sql:" prefix) with the job, or NULL with what is wrong in errbuf.
 * has_timeout: its job type sets a statement_timeout (a cancel is then the
 * job's own). Free it with sl_sql_handler_destroy(). */
const struct sl_handler *sl_sql_handler_new(const char *function, int has_timeout, char *errbuf,
                                            size_t errbuf_size);

/* Returns 1 when h was made by sl_sql_handler_new(). */
int sl_sql_handler_is(const struct sl_handler *h);

/* Frees a handler made by sl_sql_handler_new(); any other h (NULL too) is
 * left alone. */
void sl_sql_handler_destroy(const struct sl_handler *h);

/* Checks on conn that h's function exists as SCHEMA.FUNCTION(jsonb),
 * returns jsonb (or json), and that `role` (NULL: none) exists and may
 * execute it. Returns 0, or -1 with what is wrong in errbuf. */
int sl_sql_handler_check(PGconn *conn, const struct sl_handler *h, const char *role, char *errbuf,
                         size_t errbuf_size);

#endif
