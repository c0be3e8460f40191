/* pgpipe.h -- an executor's PostgreSQL connection: its prepared statements
 * and its pipelines.
 *
 * A struct sl_pgconn is one session and the statements prepared on it,
 * named by the address of their text (static storage). A struct sl_pipe is
 * a queue of statements that go to the server in one libpq pipeline, one
 * round trip; sl_pipe_run() leaves each statement's result in its step for
 * the caller to apply. Nothing here knows about jobs: a step carries the
 * caller's `item` and `kind` and the pipeline only carries them along.
 *
 * Not for: what the statements mean or what a failure does to a job
 * (group.c, txn.c). One thread uses a connection; another may only use
 * `cancel`, under `cancel_mu`.
 */
#ifndef SL_PGPIPE_H
#define SL_PGPIPE_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stddef.h>

#include "metrics.h"
#include "pg.h"

#define SL_MAX_PREPARED 32

struct sl_pgconn {
	PGconn *conn;                  /* NULL: not connected */
	const char *prepared[SL_MAX_PREPARED]; /* statements prepared on conn, by address */
	int n_prepared;
	int unnamed;                   /* set by the owner: never prepare a named statement (a
	                                * transaction-pooling PgBouncer would send its use to
	                                * another session); every statement goes unnamed */
	pthread_mutex_t *cancel_mu;    /* guards cancel (set by the owner before use) */
	PGcancel *cancel;              /* under *cancel_mu: for another thread's cancel */
	sl_metrics_series_t *round_trips; /* counts round trips; may be NULL */
};

/* Connects with conninfo, runs session_sql (may be NULL) and prepares the
 * statements prepare[0..n) on the new session (none when c->unnamed). An open, idle connection is
 * kept as it is. Returns 0, or -1 with the reason in errbuf and c closed. */
int sl_pgconn_open(struct sl_pgconn *c, const char *conninfo, const char *session_sql,
                   const char *const *prepare, size_t n, char *errbuf, size_t errbuf_size);

/* Closes c's session and forgets what was prepared on it. No-op when closed. */
void sl_pgconn_close(struct sl_pgconn *c);

/* Runs `sql` (static storage) with n text params as a prepared statement,
 * preparing it on first use. Returns the server's result (caller clears;
 * may be NULL when the connection is lost). */
PGresult *sl_pgconn_exec(struct sl_pgconn *c, const char *sql, int n, const char *const *params);

/* sl_pgconn_exec(), then: returns the result when it is a success (caller
 * clears), else NULL with the error's class in *cls and its SQLSTATE and
 * words in errbuf. */
PGresult *sl_pgconn_run(struct sl_pgconn *c, const char *sql, int n, const char *const *params,
                        enum sl_pg_class *cls, char *errbuf, size_t errbuf_size);

/* sl_pgconn_run() for a statement whose result does not matter: 0 or -1. */
int sl_pgconn_command(struct sl_pgconn *c, const char *sql, char *errbuf, size_t errbuf_size);

/* Fills errbuf with a failed statement's SQLSTATE and words (one line). */
void sl_pgconn_describe(PGconn *conn, const PGresult *res, char *errbuf, size_t errbuf_size);

/* One queued statement. The caller fills sql (static storage: it names the
 * prepared statement) or text (sent unprepared), its params, and its own
 * item and kind; sl_pipe_run() fills res. */
struct sl_pipe_step {
	const char *sql;               /* NULL: `text` is sent as is */
	char text[48];
	int n;                         /* params */
	const char *const *ext;        /* params owned by the caller (live during the run), or NULL: own */
	const char *own[6];
	size_t item;                   /* the caller's */
	size_t item_last;              /* the caller's: a step for items item..item_last (= item) */
	int kind;                      /* the caller's */
	PGresult *res;                 /* after a run: its result (the step's own until taken), or NULL */
	int prepare;                   /* private: the run prepares it first... */
	int prepared_as;               /* ...as statement s<prepared_as> */
};

struct sl_pipe {
	struct sl_pipe_step *steps;
	int n, cap;
	int lost;                      /* the connection failed: nothing goes out any more */
	char lost_error[512];          /* its words */
};

/* Queues a step at position `at` (p->n: the end; the steps from `at` move
 * one up) and returns it. Aborts when the queue is full: a bug. */
struct sl_pipe_step *sl_pipe_insert(struct sl_pipe *p, int at, const char *sql, size_t item, int kind, int n,
                                    const char *const *params);

/* Removes step k. */
void sl_pipe_remove(struct sl_pipe *p, int k);

/* Sends the queued steps in one pipeline and reads every result into its
 * step (a statement the server skipped after a failure gets its
 * PGRES_PIPELINE_ABORTED result). Returns how many steps got a result: all
 * of them, or, once the connection failed (p->lost, with lost_error), the
 * ones read before. Steps stay queued, with their results, until
 * sl_pipe_clear(). The connection stays open (a handler may hold it). */
int sl_pipe_run(struct sl_pgconn *c, struct sl_pipe *p);

/* Test seam for tests/pg: when set, sl_pipe_run() calls it after the
 * pipeline is sent and before its results are read (to cut the connection
 * at that moment, say). NULL in the worker; set it before any executor
 * runs. */
extern void (*sl_pipe_test_hook)(struct sl_pgconn *c, struct sl_pipe *p);

/* Clears every step's result that was not taken, and empties the queue. */
void sl_pipe_clear(struct sl_pipe *p);

#endif
