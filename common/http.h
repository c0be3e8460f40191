/* http.h -- the worker's HTTP listener: /metrics, /healthz and /readyz.
 *
 * For: exposing a metrics registry to Prometheus and liveness/readiness to
 * supervisors, on one address (loopback by default), from a thread of its
 * own (libmicrohttpd's internal polling thread). Routes: GET or HEAD of
 * /metrics (text/plain; version=0.0.4), /healthz (200 "ok"), /readyz (200
 * "ready", or 503 "not ready: <reason>" from a callback); any other path is
 * 404, any other method on these paths 405.
 * Not for: TLS, authentication, or serving anything else; put a reverse proxy
 * in front to expose it beyond the host.
 *
 * Threads: sl_http_start() and sl_http_stop() belong to the thread that owns
 * the worker's lifetime (main). The callbacks run on the HTTP thread, one
 * request at a time, so they must be thread-safe with respect to the rest of
 * the worker, and quick.
 */
#ifndef SL_HTTP_H
#define SL_HTTP_H

#include <stddef.h>
#include <sys/socket.h>

#include "metrics.h"

typedef struct sl_http sl_http_t;

/* Readiness, asked on every /readyz: returns 1 when ready, or 0 after
 * writing a one-line reason ("no partitions assigned") to reason. Runs on
 * the HTTP thread. */
typedef int (*sl_http_ready_fn)(void *arg, char *reason, size_t reason_size);

struct sl_http_handlers {
	sl_metrics_t *metrics;          /* borrowed, must outlive the server; NULL: /metrics is 404 */
	sl_http_ready_fn ready;         /* NULL: always ready */
	void *ready_arg;                /* borrowed, passed to ready */
};

/* Checks the syntax of a listen address without binding: "HOST:PORT" with a
 * numeric IPv4 host, "[IPv6]:PORT", "localhost:PORT" (127.0.0.1) or ":PORT"
 * (127.0.0.1 as well: the listener is loopback unless told otherwise); PORT
 * is 0 to 65535, 0 asking for an ephemeral port. No name is looked up, so
 * the check never waits for DNS. Returns 0, or -1 with the reason in errbuf.
 * For configuration checks (`sluice-worker -n`); any thread. */
int sl_http_listen_check(const char *address, char *errbuf, size_t errbuf_size);

/* Parses a listen address as sl_http_listen_check() does into *ss and
 * *ss_len (OUT: zeroed on failure), for another listener that binds the
 * same way (sluicectl console). Returns 0, or -1 with the reason in
 * errbuf. Any thread. */
int sl_http_listen_addr(const char *address, struct sockaddr_storage *ss, socklen_t *ss_len, char *errbuf,
                        size_t errbuf_size);

/* Binds `address` (see sl_http_listen_check), listens and starts serving
 * `handlers` (copied; what they point to is borrowed). Returns a new server
 * that the caller stops with sl_http_stop(), or NULL with the reason in
 * errbuf, e.g. `could not listen on "127.0.0.1:9187": Address already in use`. */
sl_http_t *sl_http_start(const char *address, const struct sl_http_handlers *handlers, char *errbuf,
                         size_t errbuf_size);

/* Returns the port the server is bound to (the ephemeral one when the
 * address asked for port 0). This function can't fail. */
int sl_http_port(const sl_http_t *h);

/* Stops serving, waits for the HTTP thread to finish the request in hand,
 * closes the socket and frees h. After it returns no callback runs. NULL is
 * a no-op. */
void sl_http_stop(sl_http_t *h);

#endif
