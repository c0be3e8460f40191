/* pg.h -- PostgreSQL helpers shared by the executors, handlers and sluicectl.
 *
 * Connection set-up with redacted errors, and the classification of failures
 * that DESIGN.md fixes: the job's own transient failures (retried, counting
 * attempts), "cannot judge now" (the server is away or refuses to work for
 * reasons that are not the job's: nothing counts, the job waits) and
 * permanent ones (the job fails).
 * Not for: job execution (executor) or handler logic (workers/).
 */
#ifndef SL_PG_H
#define SL_PG_H

#include <stddef.h>
#include <libpq-fe.h>

enum sl_pg_class {
	SL_PG_OK = 0,
	SL_PG_TRANSIENT,       /* the job's own, retried with attempts counted: 40001, 40P01, 55P03 */
	SL_PG_PERMANENT,       /* fail: everything else (22xxx bad data, 23xxx constraint, ...) */
	SL_PG_UNAVAILABLE,     /* cannot judge now: lost connection, class 08, 53 (resources),
	                        * 57P01-57P05 (shutdown, terminated, timeouts), 57014 (a cancel),
	                        * 25006 (read-only server), 25P03 (idle-in-transaction timeout) */
};

/* Classifies the outcome of a command on conn: `res` is its result (NULL
 * when libpq returned none). A NULL result, a result without a SQLSTATE or
 * a connection not in CONNECTION_OK is SL_PG_UNAVAILABLE. A cancel (57014)
 * is too: sluice cancels statements only when it abandons jobs at a stop,
 * and those jobs are handed back unrun, so any cancel that reaches a job is
 * someone else's (an operator, or PostgreSQL's own lock-timeout signal
 * arriving late), never the job's fault. */
enum sl_pg_class sl_pg_classify(const PGconn *conn, const PGresult *res);

/* Classifies a SQLSTATE alone, as sl_pg_classify() does for an error
 * result that has it ("" is SL_PG_UNAVAILABLE). */
enum sl_pg_class sl_pg_classify_sqlstate(const char *sqlstate);

/* Returns the SQLSTATE of res, or "" when it has none (never NULL). */
const char *sl_pg_sqlstate(const PGresult *res);

/* Writes conninfo (a key=value string or a URI; NULL or "" gives "") into
 * out for display, as the key=value pairs libpq parses from it, with the value
 * of every option libpq marks as a secret (dispchar "*": password,
 * sslpassword) replaced by "***". Returns 0; or -1 when libpq cannot parse it,
 * with "invalid connection string: " and libpq's reason, minus the tokens it
 * quotes, in out. A short out truncates. Thread-safe; this is the one way a
 * conninfo reaches a log line or a terminal. */
int sl_pg_conninfo_redact(const char *conninfo, char *out, size_t out_size);

/* Returns 1 when conninfo parses and sets an option libpq marks as a secret
 * (a password) to a non-empty value, else 0. */
int sl_pg_conninfo_has_secret(const char *conninfo);

/* Connects with `conninfo` (empty: libpq's environment) and sets
 * application_name. Returns a connection in CONNECTION_OK, or NULL with the
 * reason (never the password) in errbuf. */
PGconn *sl_pg_connect(const char *conninfo, const char *application_name, char *errbuf,
                      size_t errbuf_size);

/* Runs a command without parameters; returns 0 if its status is
 * PGRES_COMMAND_OK or PGRES_TUPLES_OK, else -1 with the server's message in
 * errbuf. The result is cleared. */
int sl_pg_exec(PGconn *conn, const char *sql, char *errbuf, size_t errbuf_size);

#endif
