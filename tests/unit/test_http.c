/* test_http.c -- unit tests for http.c: routes, status codes, content types, listen addresses,
 * connection limits.
 *
 * The server listens on an ephemeral loopback port; a plain socket client
 * sends each request, so what is checked is what goes over the wire.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "http.h"
#include "metrics.h"

struct response {
	int status;
	char headers[4096];
	char body[65536];
	size_t body_len;
};

/* Sends `request` to host:port and reads the whole response (the request
 * asks for Connection: close), giving up on connect, send or each read after
 * timeout_ms. Returns 0 or -1. */
static int
fetch_timed(int family, int port, const char *request, int timeout_ms, struct response *r)
{
	struct sockaddr_storage ss;
	socklen_t len;
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	char buf[sizeof(r->headers) + sizeof(r->body)], *sep;
	size_t got = 0;
	ssize_t n;
	int fd, ret = -1;

	memset(r, 0, sizeof(*r));
	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		sin6->sin6_addr = in6addr_loopback;
		len = sizeof(*sin6);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*sin);
	}
	if ((fd = socket(family, SOCK_STREAM, 0)) < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&ss, len) != 0)
		goto out;
	if (write(fd, request, strlen(request)) != (ssize_t)strlen(request))
		goto out;
	while (got < sizeof(buf) - 1 && (n = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)n;
	buf[got] = '\0';
	if ((sep = strstr(buf, "\r\n\r\n")) == NULL || sscanf(buf, "HTTP/1.1 %d", &r->status) != 1)
		goto out;
	snprintf(r->headers, sizeof(r->headers), "%.*s\r\n", (int)(sep - buf), buf);
	r->body_len = got - (size_t)(sep + 4 - buf);
	memcpy(r->body, sep + 4, r->body_len);
	ret = 0;
out:
	close(fd);
	return ret;
}

static int
fetch_raw(int family, int port, const char *request, struct response *r)
{
	return fetch_timed(family, port, request, 5000, r);
}

static int
fetch(int port, const char *method, const char *path, struct response *r)
{
	char req[512];

	snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
	         method, path);
	return fetch_raw(AF_INET, port, req, r);
}

/* Returns the value of header `name` (case-insensitive) in r, or NULL. */
static const char *
header(const struct response *r, const char *name, char *buf, size_t size)
{
	const char *p = r->headers;
	size_t n = strlen(name);

	while ((p = strstr(p, "\r\n")) != NULL) {
		p += 2;
		if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
			const char *v = p + n + 1, *end = strstr(v, "\r\n");
			while (*v == ' ')
				v++;
			snprintf(buf, size, "%.*s", (int)(end - v), v);
			return buf;
		}
	}
	return NULL;
}

/* Written by the test, read on the HTTP thread. */
struct readiness {
	_Atomic int ready;
	_Atomic int calls;
};

static int
ready_cb(void *arg, char *reason, size_t reason_size)
{
	struct readiness *r = arg;

	r->calls++;
	if (!r->ready)
		snprintf(reason, reason_size, "no partitions assigned");
	return r->ready;
}

struct fixture {
	sl_metrics_t *metrics;
	sl_http_t *http;
	struct readiness readiness;
	int port;
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct sl_http_handlers handlers;
	char err[256];

	if (f == NULL || (f->metrics = sl_metrics_new()) == NULL)
		return -1;
	sl_metrics_counter_add(
		sl_metrics_series(sl_metrics_counter(f->metrics, "sluice_jobs_total", "Jobs.", "type"),
		                  "ledger.open"),
		5);
	handlers.metrics = f->metrics;
	handlers.ready = ready_cb;
	handlers.ready_arg = &f->readiness;
	f->readiness.ready = 1;
	f->http = sl_http_start("127.0.0.1:0", &handlers, err, sizeof(err));
	if (f->http == NULL) {
		print_error("%s\n", err);
		return -1;
	}
	f->port = sl_http_port(f->http);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	sl_http_stop(f->http);
	sl_metrics_destroy(f->metrics);
	free(f);
	return 0;
}

static void
test_metrics(void **state)
{
	struct fixture *f = *state;
	struct response r;
	char v[256];

	assert_true(f->port > 0);
	assert_int_equal(fetch(f->port, "GET", "/metrics", &r), 0);
	assert_int_equal(r.status, 200);
	assert_non_null(header(&r, "Content-Type", v, sizeof(v)));
	assert_string_equal(v, "text/plain; version=0.0.4; charset=utf-8");
	assert_non_null(strstr(r.body, "sluice_jobs_total{type=\"ledger.open\"} 5\n"));
	assert_non_null(strstr(r.body, "sluice_build_info{version="));
	assert_non_null(header(&r, "Content-Length", v, sizeof(v)));
	assert_int_equal(atoi(v), r.body_len);
	/* A query string does not change the route. */
	assert_int_equal(fetch(f->port, "GET", "/metrics?name[]=x", &r), 0);
	assert_int_equal(r.status, 200);
}

static void
test_head(void **state)
{
	struct fixture *f = *state;
	struct response r;
	char v[256];

	assert_int_equal(fetch(f->port, "HEAD", "/metrics", &r), 0);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, 0);
	assert_non_null(header(&r, "Content-Type", v, sizeof(v)));
	assert_string_equal(v, "text/plain; version=0.0.4; charset=utf-8");
	assert_int_equal(fetch(f->port, "HEAD", "/healthz", &r), 0);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, 0);
}

static void
test_healthz(void **state)
{
	struct fixture *f = *state;
	struct response r;
	char v[256];

	assert_int_equal(fetch(f->port, "GET", "/healthz", &r), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "ok\n");
	assert_non_null(header(&r, "Content-Type", v, sizeof(v)));
	assert_string_equal(v, "text/plain; charset=utf-8");
}

static void
test_readyz(void **state)
{
	struct fixture *f = *state;
	struct response r;

	assert_int_equal(fetch(f->port, "GET", "/readyz", &r), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "ready\n");
	f->readiness.ready = 0;
	assert_int_equal(fetch(f->port, "GET", "/readyz", &r), 0);
	assert_int_equal(r.status, 503);
	assert_string_equal(r.body, "not ready: no partitions assigned\n");
	assert_int_equal(f->readiness.calls, 2);
	f->readiness.ready = 1;
}

static void
test_not_found_and_methods(void **state)
{
	struct fixture *f = *state;
	struct response r;
	char v[256];
	const char *post = "POST /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
	                   "Content-Length: 5\r\n\r\nhello";

	assert_int_equal(fetch(f->port, "GET", "/", &r), 0);
	assert_int_equal(r.status, 404);
	assert_int_equal(fetch(f->port, "GET", "/metrics/x", &r), 0);
	assert_int_equal(r.status, 404);
	assert_int_equal(fetch(f->port, "DELETE", "/nothing", &r), 0);
	assert_int_equal(r.status, 404);
	assert_int_equal(fetch(f->port, "DELETE", "/healthz", &r), 0);
	assert_int_equal(r.status, 405);
	assert_non_null(header(&r, "Allow", v, sizeof(v)));
	assert_string_equal(v, "GET, HEAD");
	assert_int_equal(fetch_raw(AF_INET, f->port, post, &r), 0);
	assert_int_equal(r.status, 405);
	/* The server still answers after a refused body. */
	assert_int_equal(fetch(f->port, "GET", "/healthz", &r), 0);
	assert_int_equal(r.status, 200);
}

static void
test_address_in_use(void **state)
{
	struct fixture *f = *state;
	char addr[64], err[256], want[128];

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", f->port);
	assert_null(sl_http_start(addr, NULL, err, sizeof(err)));
	snprintf(want, sizeof(want), "could not listen on \"%s\": Address already in use", addr);
	assert_string_equal(err, want);
}

static void
test_restart_same_port(void **state)
{
	struct sl_http_handlers handlers = { NULL, NULL, NULL };
	sl_http_t *h;
	char addr[64], err[256];
	struct response r;
	int port;

	(void)state;
	/* :0 binds loopback; NULL metrics makes /metrics a 404. */
	h = sl_http_start(":0", &handlers, err, sizeof(err));
	assert_non_null(h);
	port = sl_http_port(h);
	assert_int_equal(fetch(port, "GET", "/metrics", &r), 0);
	assert_int_equal(r.status, 404);
	assert_int_equal(fetch(port, "GET", "/readyz", &r), 0);
	assert_int_equal(r.status, 200);
	sl_http_stop(h);
	/* The socket is closed on stop: the port can be bound again at once. */
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	h = sl_http_start(addr, NULL, err, sizeof(err));
	if (h == NULL)
		print_error("%s\n", err);
	assert_non_null(h);
	assert_int_equal(sl_http_port(h), port);
	sl_http_stop(h);
	sl_http_stop(NULL);
}

static void
test_ipv6(void **state)
{
	sl_http_t *h;
	char err[256], req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	struct response r;
	int fd;

	(void)state;
	/* Skip where the host has no IPv6 loopback (some containers). */
	fd = socket(AF_INET6, SOCK_STREAM, 0);
	if (fd >= 0) {
		struct sockaddr_in6 sin6;
		memset(&sin6, 0, sizeof(sin6));
		sin6.sin6_family = AF_INET6;
		sin6.sin6_addr = in6addr_loopback;
		if (bind(fd, (struct sockaddr *)&sin6, sizeof(sin6)) != 0) {
			close(fd);
			fd = -1;
		}
	}
	if (fd < 0)
		skip();
	close(fd);
	h = sl_http_start("[::1]:0", NULL, err, sizeof(err));
	if (h == NULL)
		print_error("%s\n", err);
	assert_non_null(h);
	assert_int_equal(fetch_raw(AF_INET6, sl_http_port(h), req, &r), 0);
	assert_int_equal(r.status, 200);
	sl_http_stop(h);
}

static void
test_listen_check(void **state)
{
	char err[256];

	(void)state;
	assert_int_equal(sl_http_listen_check("127.0.0.1:9187", err, sizeof(err)), 0);
	assert_int_equal(sl_http_listen_check("0.0.0.0:80", err, sizeof(err)), 0);
	assert_int_equal(sl_http_listen_check("[::1]:9187", err, sizeof(err)), 0);
	assert_int_equal(sl_http_listen_check("[::]:0", err, sizeof(err)), 0);
	assert_int_equal(sl_http_listen_check(":0", err, sizeof(err)), 0);
	assert_int_equal(sl_http_listen_check("localhost:65535", err, sizeof(err)), 0);

	assert_int_equal(sl_http_listen_check("", err, sizeof(err)), -1);
	assert_string_equal(err,
	                    "invalid listen address \"\": expected HOST:PORT, [IPV6]:PORT or :PORT");
	assert_int_equal(sl_http_listen_check("9187", err, sizeof(err)), -1);
	assert_int_equal(sl_http_listen_check("::1:9187", err, sizeof(err)), -1);
	assert_int_equal(sl_http_listen_check("[::1]9187", err, sizeof(err)), -1);
	assert_int_equal(sl_http_listen_check("[::1:9187", err, sizeof(err)), -1);
	assert_int_equal(sl_http_listen_check("127.0.0.1:65536", err, sizeof(err)), -1);
	assert_string_equal(err,
	                    "invalid listen address \"127.0.0.1:65536\": the port must be 0 to 65535");
	assert_int_equal(sl_http_listen_check("127.0.0.1:", err, sizeof(err)), -1);
	assert_int_equal(sl_http_listen_check("127.0.0.1:80x", err, sizeof(err)), -1);
	assert_int_equal(sl_http_listen_check("127.0.0.1:-1", err, sizeof(err)), -1);
	assert_int_equal(sl_http_listen_check("127.0.0.1:99999999999999999999", err, sizeof(err)), -1);
	assert_int_equal(sl_http_listen_check("example.com:80", err, sizeof(err)), -1);
	assert_string_equal(err, "invalid listen address \"example.com:80\": the host must be a "
	                         "numeric IPv4 address, [IPv6] address or localhost");
	assert_int_equal(sl_http_listen_check("[127.0.0.1]:80", err, sizeof(err)), -1);
	assert_int_equal(sl_http_listen_check("256.0.0.1:80", err, sizeof(err)), -1);
	assert_null(sl_http_start("nonsense", NULL, err, sizeof(err)));
	assert_string_equal(
		err, "invalid listen address \"nonsense\": expected HOST:PORT, [IPV6]:PORT or :PORT");
}

/* Opens up to n connections to 127.0.0.1:port from source address `from`
 * (any 127.0.0.0/8 address is the loopback on Linux) and sends nothing on
 * them: idle clients holding slots. The connects do not wait for the server
 * to accept. Returns how many were opened, their descriptors in fds; -1 when
 * `from` cannot be bound. */
static int
hold_idle(const char *from, int port, int *fds, int n)
{
	struct sockaddr_in src, dst;
	int i, fd;

	memset(&src, 0, sizeof(src));
	src.sin_family = AF_INET;
	inet_pton(AF_INET, from, &src.sin_addr);
	memset(&dst, 0, sizeof(dst));
	dst.sin_family = AF_INET;
	dst.sin_port = htons((uint16_t)port);
	dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (i = 0; i < n; i++) {
		if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)) < 0)
			break;
		if (bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
			close(fd);
			return i == 0 ? -1 : i;
		}
		if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) != 0 && errno != EINPROGRESS) {
			close(fd);
			break;
		}
		fds[i] = fd;
	}
	return i;
}

/* 500 idle connections from one client must not starve the probes of
 * another: the per-IP limit turns the excess away at once, so supervisors'
 * health checks (and Prometheus) still get their answers, each quickly. */
static void
test_idle_connections_do_not_starve_probes(void **state)
{
	struct fixture *f = *state;
	static int fds[500];
	struct timespec pause = { 0, 200 * 1000 * 1000 };
	struct response r;
	int i, held, answered = 0;
	const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

	held = hold_idle("127.0.0.2", f->port, fds, 500);
	if (held < 0)
		skip();
	assert_true(held >= 400);
	nanosleep(&pause, NULL);
	for (i = 0; i < 13; i++)
		if (fetch_timed(AF_INET, f->port, req, 1000, &r) == 0 && r.status == 200)
			answered++;
	for (i = 0; i < held; i++)
		close(fds[i]);
	assert_int_equal(answered, 13);
}

/* Each connection the limits turn away is a libmicrohttpd message; a client
 * connecting in a loop must not write the log at the same pace. */
static void
test_refusals_do_not_flood_the_log(void **state)
{
	struct fixture *f = *state;
	static int fds[200];
	struct timespec pause = { 0, 200 * 1000 * 1000 };
	char path[] = "/tmp/test_http_log.XXXXXX", line[1024];
	int i, held, saved, tmp, lines = 0;
	FILE *fp;

	assert_true((tmp = mkstemp(path)) >= 0);
	unlink(path);
	fflush(stderr);
	saved = dup(2);
	dup2(tmp, 2);
	held = hold_idle("127.0.0.2", f->port, fds, 200);
	nanosleep(&pause, NULL);
	for (i = 0; i < held; i++)
		close(fds[i]);
	dup2(saved, 2);
	close(saved);
	if (held < 0) {
		close(tmp);
		skip();
	}
	assert_non_null(fp = fdopen(tmp, "r"));
	rewind(fp);
	while (fgets(line, sizeof(line), fp) != NULL)
		if (strstr(line, "http server:") != NULL)
			lines++;
	fclose(fp);
	assert_true(held >= 100);
	assert_in_range(lines, 1, 3);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
		cmocka_unit_test_setup_teardown(test_head, setup, teardown),
		cmocka_unit_test_setup_teardown(test_healthz, setup, teardown),
		cmocka_unit_test_setup_teardown(test_readyz, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_found_and_methods, setup, teardown),
		cmocka_unit_test_setup_teardown(test_address_in_use, setup, teardown),
		cmocka_unit_test(test_restart_same_port),
		cmocka_unit_test(test_ipv6),
		cmocka_unit_test(test_listen_check),
		cmocka_unit_test_setup_teardown(test_idle_connections_do_not_starve_probes, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(test_refusals_do_not_flood_the_log, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
