/* http.c -- the /metrics, /healthz and /readyz listener behind http.h, on libmicrohttpd.
 *
 * We bind and listen ourselves and hand the socket to libmicrohttpd
 * (MHD_OPTION_LISTEN_SOCKET): that way a bind failure reports its errno in
 * our own words, the address is parsed once and never resolved, and the
 * bound port is read with getsockname(). From MHD_start_daemon() on, the
 * socket is libmicrohttpd's: it closes it when the daemon stops, and when the
 * start fails. Not a web framework: three fixed routes, no bodies accepted.
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "log.h"

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define TEXT_CONTENT_TYPE "text/plain; charset=utf-8"

/* Connection limits. The listener serves a few well-behaved clients (the
 * supervisor's probes, a Prometheus scraper, an operator's curl), each with a
 * connection or two, so one address holding more than PER_IP_LIMIT is turned
 * away at accept instead of taking the slots the probes need: with only a
 * total limit, 500 idle connections from one client starved every probe
 * until they timed out. TOTAL_LIMIT bounds the descriptors the listener can
 * hold whatever the number of clients, and an idle connection (one that has
 * not sent a whole request, or a kept-alive one between requests) is closed
 * after IDLE_TIMEOUT_S, so slots come back quickly. */
#define PER_IP_LIMIT 8u
#define TOTAL_LIMIT 64u
#define IDLE_TIMEOUT_S 5u

/* libmicrohttpd logs once per refused connection, so a client opening
 * connections in a loop would write the log as fast as it connects. At most
 * LOG_BURST of its messages are written per LOG_WINDOW_S seconds; the next
 * window starts with a count of those left out. */
#define LOG_BURST 3u
#define LOG_WINDOW_S 10

struct sl_http {
	struct MHD_Daemon *daemon;
	struct sl_http_handlers handlers;
	int port;
	pthread_mutex_t log_lock;      /* guards the three below: mhd_log runs on any thread */
	time_t log_window;             /* CLOCK_MONOTONIC second the current window began */
	unsigned int log_written;      /* messages written in the current window */
	unsigned int log_dropped;      /* messages left out in the current window */
};

/* Parses `address` into *ss (OUT) and *ss_len (OUT, 0 on failure). Returns
 * 0, or -1 with the reason in errbuf. */
static int
parse_listen(const char *address, struct sockaddr_storage *ss, socklen_t *ss_len, char *errbuf,
             size_t errbuf_size)
{
	static const char syntax[] = "expected HOST:PORT, [IPV6]:PORT or :PORT";
	static const char bad_port[] = "the port must be 0 to 65535";
	static const char bad_host[] =
		"the host must be a numeric IPv4 address, [IPv6] address or localhost";
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	char host[INET6_ADDRSTRLEN + 1];
	const char *host_start, *host_end, *port_str, *p, *why = NULL;
	unsigned long port = 0;

	memset(ss, 0, sizeof(*ss));
	*ss_len = 0;
	if (address == NULL)
		address = "";
	if (address[0] == '[') {
		host_start = address + 1;
		host_end = strchr(host_start, ']');
		if (host_end == NULL || host_end[1] != ':') {
			why = syntax;
			goto out;
		}
		port_str = host_end + 2;
	} else {
		host_start = address;
		host_end = strrchr(address, ':');
		if (host_end == NULL || memchr(address, ':', (size_t)(host_end - address)) != NULL) {
			why = syntax;
			goto out;
		}
		port_str = host_end + 1;
	}
	for (p = port_str; *p >= '0' && *p <= '9' && port <= 65535; p++)
		port = port * 10 + (unsigned long)(*p - '0');
	if (*port_str == '\0' || *p != '\0' || port > 65535) {
		why = bad_port;
		goto out;
	}
	if ((size_t)(host_end - host_start) >= sizeof(host)) {
		why = bad_host;
		goto out;
	}
	memcpy(host, host_start, (size_t)(host_end - host_start));
	host[host_end - host_start] = '\0';

	if (address[0] == '[') {
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
			why = bad_host;
			goto out;
		}
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*ss_len = sizeof(*sin6);
		goto out;
	}
	/* An empty host means loopback, not every interface: exposing the
	 * listener beyond the host has to be asked for with 0.0.0.0 or [::]. */
	if (*host == '\0' || strcmp(host, "localhost") == 0)
		snprintf(host, sizeof(host), "127.0.0.1");
	if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
		why = bad_host;
		goto out;
	}
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	*ss_len = sizeof(*sin);
out:
	if (why == NULL)
		return 0;
	memset(ss, 0, sizeof(*ss));
	snprintf(errbuf, errbuf_size, "invalid listen address \"%s\": %s", address, why);
	return -1;
}

int
sl_http_listen_check(const char *address, char *errbuf, size_t errbuf_size)
{
	struct sockaddr_storage ss;
	socklen_t ss_len;

	return parse_listen(address, &ss, &ss_len, errbuf, errbuf_size);
}

int
sl_http_listen_addr(const char *address, struct sockaddr_storage *ss, socklen_t *ss_len, char *errbuf,
                    size_t errbuf_size)
{
	return parse_listen(address, ss, ss_len, errbuf, errbuf_size);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* libmicrohttpd's own error messages, into our log, at most LOG_BURST per
 * LOG_WINDOW_S. `cls` is the server. */
static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
	sl_http_t *h = cls;
	struct timespec now;
	unsigned int dropped = 0;
	char msg[512];
	size_t n;
	int write_it;

	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&h->log_lock);
	if (now.tv_sec - h->log_window >= LOG_WINDOW_S) {
		dropped = h->log_dropped;
		h->log_window = now.tv_sec;
		h->log_written = 0;
		h->log_dropped = 0;
	}
	write_it = h->log_written < LOG_BURST;
	if (write_it)
		h->log_written++;
	else
		h->log_dropped++;
	pthread_mutex_unlock(&h->log_lock);
	if (dropped > 0)
		sl_log_warn("http server: %u more messages left out in the last %d seconds", dropped,
		            LOG_WINDOW_S);
	if (!write_it)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
		msg[--n] = '\0';
	sl_log_warn("http server: %s", msg);
}

/* Queues a response; `body` is copied unless mode says otherwise, and freed
 * on every path when mode is MHD_RESPMEM_MUST_FREE. */
static enum MHD_Result
reply(struct MHD_Connection *conn, unsigned int status, const char *content_type, char *body,
      size_t len, enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(len, body, mode);
	if (resp == NULL) {
		if (mode == MHD_RESPMEM_MUST_FREE)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result
reply_text(struct MHD_Connection *conn, unsigned int status, const char *text)
{
	return reply(conn, status, TEXT_CONTENT_TYPE, (char *)text, strlen(text),
	             MHD_RESPMEM_PERSISTENT);
}

/* libmicrohttpd's request callback; runs on the HTTP thread. A response is
 * queued on the first call, so a request body, if any, is never read. For
 * HEAD, libmicrohttpd sends the headers (Content-Length included) without
 * the body. */
static enum MHD_Result
answer(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
       const char *version, const char *upload_data, size_t *upload_data_size, void **req_cls)
{
	sl_http_t *h = cls;
	char reason[256], body[300];
	char *text;
	size_t len;

	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	(void)req_cls;
	if (strcmp(url, "/metrics") != 0 && strcmp(url, "/healthz") != 0 &&
	    strcmp(url, "/readyz") != 0)
		return reply_text(conn, MHD_HTTP_NOT_FOUND, "not found\n");
	if (strcmp(url, "/metrics") == 0 && h->handlers.metrics == NULL)
		return reply_text(conn, MHD_HTTP_NOT_FOUND, "not found\n");
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");

	if (strcmp(url, "/healthz") == 0)
		return reply_text(conn, MHD_HTTP_OK, "ok\n");
	if (strcmp(url, "/readyz") == 0) {
		reason[0] = '\0';
		if (h->handlers.ready == NULL ||
		    h->handlers.ready(h->handlers.ready_arg, reason, sizeof(reason)))
			return reply_text(conn, MHD_HTTP_OK, "ready\n");
		snprintf(body, sizeof(body), "not ready: %s\n", reason[0] ? reason : "unknown reason");
		return reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, TEXT_CONTENT_TYPE, body, strlen(body),
		             MHD_RESPMEM_MUST_COPY);
	}
	if ((text = sl_metrics_render(h->handlers.metrics, &len)) == NULL)
		return reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
	return reply(conn, MHD_HTTP_OK, METRICS_CONTENT_TYPE, text, len, MHD_RESPMEM_MUST_FREE);
}

sl_http_t *
sl_http_start(const char *address, const struct sl_http_handlers *handlers, char *errbuf,
              size_t errbuf_size)
{
	struct sockaddr_storage ss, bound;
	socklen_t ss_len, bound_len = sizeof(bound);
	sl_http_t *h = NULL, *ret = NULL;
	int fd = -1, one = 1;
	unsigned int flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;

	if (parse_listen(address, &ss, &ss_len, errbuf, errbuf_size) != 0)
		goto out;
	if ((h = calloc(1, sizeof(*h))) == NULL) {
		snprintf(errbuf, errbuf_size, "out of memory");
		goto out;
	}
	if (handlers != NULL)
		h->handlers = *handlers;
	pthread_mutex_init(&h->log_lock, NULL);
	h->log_window = -LOG_WINDOW_S; /* the first message opens a window */

	/* Each step sets errno on failure; the message below reports it. A
	 * restarted worker must not wait for its predecessor's TIME_WAIT
	 * (SO_REUSEADDR), and [::] means IPv6 only (0.0.0.0 is another
	 * listener). */
	if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    (ss.ss_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) ||
	    bind(fd, (struct sockaddr *)&ss, ss_len) != 0 || listen(fd, 64) != 0 ||
	    getsockname(fd, (struct sockaddr *)&bound, &bound_len) != 0) {
		snprintf(errbuf, errbuf_size, "could not listen on \"%s\": %m", address);
		goto out;
	}
	if (ss.ss_family == AF_INET6) {
		flags |= MHD_USE_IPv6;
		h->port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
	} else {
		h->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
	}

	h->daemon = MHD_start_daemon(flags, 0, NULL, NULL, answer, h,
	                             MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
	                             MHD_OPTION_LISTEN_SOCKET, fd,
	                             MHD_OPTION_PER_IP_CONNECTION_LIMIT, PER_IP_LIMIT,
	                             MHD_OPTION_CONNECTION_LIMIT, TOTAL_LIMIT,
	                             MHD_OPTION_CONNECTION_TIMEOUT, IDLE_TIMEOUT_S,
	                             MHD_OPTION_END);
	fd = -1; /* now owned by libmicrohttpd, whether it started or not */
	if (h->daemon == NULL) {
		snprintf(errbuf, errbuf_size, "could not start the HTTP server on \"%s\"", address);
		goto out;
	}
	ret = h;
	h = NULL; /* now owned by the caller */
out:
	if (fd >= 0)
		close(fd);
	if (h != NULL)
		pthread_mutex_destroy(&h->log_lock);
	free(h);
	return ret;
}

int
sl_http_port(const sl_http_t *h)
{
	return h->port;
}

void
sl_http_stop(sl_http_t *h)
{
	if (h == NULL)
		return;
	MHD_stop_daemon(h->daemon);
	pthread_mutex_destroy(&h->log_lock);
	free(h);
}
