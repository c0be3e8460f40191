/* ctl_console.h -- the parts of `sluicectl console` (cmd/ctl_console*.c).
 *
 * ctl_console.c is the server: options, the listener, authentication and
 * CSRF, routing. ctl_console_sampler.c polls the workers' /metrics.
 * ctl_console_pages.c (fleet, job, outbox) and ctl_console_dlq.c render the
 * pages from the sources of ctl_sources.h and PostgreSQL, with the helpers
 * of ctl_console_render.c; ctl_console_assets.c holds the stylesheet and
 * the script.
 * Not for anything the CLI subcommands share: that is ctl_sources.h.
 *
 * Threads: libmicrohttpd runs each connection on a thread of its own, so
 * page functions run on many threads at once. They read `struct console`
 * (fixed once the server starts) and the sampler (under its lock), and
 * create every client they use.
 */
#ifndef SL_CTL_CONSOLE_H
#define SL_CTL_CONSOLE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "text.h"

struct sl_config;

/* How long one source may take before a page says it is down. */
#define SL_CONSOLE_TIMEOUT_MS 2000

/* The sampler keeps an hour of fleet-wide points, one per SL_CONSOLE_SAMPLE_S. */
#define SL_CONSOLE_SAMPLE_S   5
#define SL_CONSOLE_POINTS     (3600 / SL_CONSOLE_SAMPLE_S)

struct sl_console_point {
	int64_t t_ms;              /* when it was taken (epoch ms) */
	double jobs_per_s;         /* across the workers reached, since the point before */
	double failed_per_s;
};

struct sl_console_sampler {
	pthread_mutex_t lock;      /* guards everything below */
	pthread_cond_t wake;
	int stop;
	json_t **latest;           /* per worker: owned summary (sl_ctl_status_json()) or NULL */
	char **error;              /* per worker: owned reason it was not reached, or NULL */
	int64_t *sampled_ms;       /* per worker: when latest/error were set */
	double *jobs_per_s;        /* per worker: since its previous sample; < 0 unknown */
	double *prev_jobs;         /* per worker: counter totals of the previous sample; < 0 none */
	double *prev_failed;
	int64_t *prev_ms;
	struct sl_console_point points[SL_CONSOLE_POINTS];
	size_t n_points, next;     /* a ring: the oldest is at next once full */
};

struct console {
	const struct sl_config *cfg;   /* borrowed, NULL without -c; owns what the strings below point to */
	const char *brokers;
	const char *conninfo;          /* a secret: never shown, never logged */
	const char *group;
	char *const *topics;
	size_t n_topics;
	const char *dlq_topic;
	const char *result_topic;      /* the default; job types may name their own (cfg) */
	char **workers;                /* worker URLs, n_workers of them (owned by the command) */
	size_t n_workers;
	const char *token;             /* NULL: no authentication (loopback only) */
	char csrf[33];                 /* hex, per process */
	int loopback;                  /* the listener is on a loopback address */
	int port;
	struct sl_console_sampler sampler;
};

/* A response being built: the page functions fill it. */
struct sl_console_reply {
	unsigned int status;           /* HTTP status */
	struct sl_text body;           /* owned */
	const char *content_type;      /* a literal */
};

/* What a request carries, as the page functions see it. */
struct sl_console_request {
	struct console *c;
	void *conn;                    /* struct MHD_Connection *, for query arguments */
	const char *path;
	int post;                      /* a POST whose CSRF token, origin and auth were checked */
	char *form;                    /* POST body (urlencoded), owned by the server; NULL for GET */
};

/* Returns the query argument `name` (borrowed from the connection, already
 * %-decoded), or NULL when absent or empty. */
const char *sl_console_arg(const struct sl_console_request *rq, const char *name);

/* Returns a form field of a POST, decoded into buf, or NULL when absent or
 * empty. */
const char *sl_console_field(const struct sl_console_request *rq, const char *name, char *buf,
                             size_t buf_size);

/* Opens a connection to PostgreSQL with short timeouts (connect_timeout,
 * statement_timeout). Returns it (the caller PQfinish()es it), or NULL with
 * the reason in errbuf; the reason never holds the conninfo. */
PGconn *sl_console_pg(const struct console *c, char *errbuf, size_t errbuf_size);

/* Asks the brokers for metadata within SL_CONSOLE_TIMEOUT_MS. Returns 0 when
 * they answer, or -1 with the reason in errbuf. */
int sl_console_kafka_probe(const struct console *c, char *errbuf, size_t errbuf_size);

/* Allocates the sampler's per-worker arrays (c->n_workers set). Returns 0,
 * or -1 when out of memory; sl_console_sampler_destroy() frees either way. */
int sl_console_sampler_init(struct console *c);

/* The sampler thread's body (pthread_create()'s, arg the console): samples
 * until c->sampler.stop is set and wake signalled. */
void *sl_console_sampler_main(void *arg);

/* Frees what sl_console_sampler_init() allocated; after the thread ended. */
void sl_console_sampler_destroy(struct console *c);

/* Copies what the sampler knows of worker i: *latest a new reference or
 * NULL, error into errbuf ("" when none), and the rest. */
void sl_console_sampler_worker(struct console *c, size_t i, json_t **latest, char *errbuf, size_t errbuf_size,
                               double *jobs_per_s, int64_t *sampled_ms);

/* Copies the sampler's points, oldest first, into out (SL_CONSOLE_POINTS
 * of room); returns how many. */
size_t sl_console_sampler_points(struct console *c, struct sl_console_point *out);

/* The pages (ctl_console_pages.c). Each fills r. */
void sl_console_page_fleet(struct sl_console_request *rq, struct sl_console_reply *r);
void sl_console_page_job(struct sl_console_request *rq, struct sl_console_reply *r);
void sl_console_page_dlq(struct sl_console_request *rq, struct sl_console_reply *r);
void sl_console_page_letter(struct sl_console_request *rq, struct sl_console_reply *r);
void sl_console_page_replay(struct sl_console_request *rq, struct sl_console_reply *r);
void sl_console_page_outbox(struct sl_console_request *rq, struct sl_console_reply *r);
void sl_console_page_not_found(struct sl_console_request *rq, struct sl_console_reply *r);

/* The assets (ctl_console_assets.c). */
extern const char sl_console_css[];
extern const char sl_console_js[];

#endif
