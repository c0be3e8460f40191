/* ctl_status.c -- `sluicectl status`: summarise a running worker from its /metrics.
 *
 * Fetches /metrics and /readyz with a minimal HTTP/1.0 client (one request
 * per connection, the body read until the server closes, 5 s deadlines),
 * parses the Prometheus text exposition (format 0.0.4) into samples, and
 * prints the families an operator looks at first: jobs by type and outcome,
 * in-flight jobs, retries, dead letters, lag per partition, executor
 * utilisation, PostgreSQL and Kafka errors, and the build. The exit status
 * says whether the worker is reachable and ready, so scripts can poll it.
 * With -c, the URL is made from the worker configuration's http.listen.
 *
 * Not for: HTTPS, redirects, chunked responses (HTTP/1.0 rules them out),
 * or exposing the metrics again (scrape the worker with Prometheus).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "config.h"
#include "ctl.h"
#include "ctl_common.h"
#include "ctl_sources.h"

#define DEFAULT_URL  "http://127.0.0.1:9187"
#define TIMEOUT_MS   5000
#define MAX_RESPONSE (16 * 1024 * 1024)
#define MAX_LABELS   8

/* ---- HTTP ---------------------------------------------------------------- */

struct response {
	int status;        /* HTTP status code */
	char *body;        /* owned, NUL-terminated */
	size_t body_len;
};

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until fd is ready for `events` or the deadline passes. Returns 0, or
 * -1 with errno set (ETIMEDOUT at the deadline). */
static int
wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int64_t left;
	int r;

	for (;;) {
		left = deadline - mono_ms();
		if (left <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		r = poll(&pfd, 1, (int)left);
		if (r > 0)
			return 0;
		if (r == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		if (errno != EINTR)
			return -1;
	}
}

/* Connects to host:port within the deadline, trying each address in turn.
 * Returns a connected, non-blocking socket, or -1 with the reason in errbuf. */
static int
connect_to(const char *host, const char *port, int64_t deadline, char *errbuf, size_t errbuf_size)
{
	struct addrinfo hints, *res = NULL, *ai;
	socklen_t len;
	int fd = -1, r, soerr = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	r = getaddrinfo(host, port, &hints, &res);
	if (r != 0) {
		snprintf(errbuf, errbuf_size, "could not resolve \"%s\": %s", host, gai_strerror(r));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno == EINPROGRESS && wait_fd(fd, POLLOUT, deadline) == 0) {
			len = sizeof(soerr);
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr == 0)
				break;
			errno = soerr;
		}
		soerr = errno;
		close(fd);
		fd = -1;
		errno = soerr;
	}
	if (fd < 0)
		snprintf(errbuf, errbuf_size, "could not connect to %s%s%s:%s: %s", strchr(host, ':') ? "[" : "", host,
		         strchr(host, ':') ? "]" : "", port, strerror(errno));
	freeaddrinfo(res);
	return fd;
}

/* GETs `path` from host:port. Fills *resp (OUT: zeroed on failure; the caller
 * frees resp->body). Returns 0, or -1 with the reason in errbuf. */
static int
http_get(const char *host, const char *port, const char *path, int timeout_ms, struct response *resp,
         char *errbuf, size_t errbuf_size)
{
	int64_t deadline = mono_ms() + timeout_ms;
	char req[1024], *buf = NULL, *p, *hdr_end;
	size_t len = 0, cap = 0, off = 0, req_len;
	ssize_t n;
	int fd, rc = -1;

	memset(resp, 0, sizeof(*resp));
	fd = connect_to(host, port, deadline, errbuf, errbuf_size);
	if (fd < 0)
		return -1;
	/* A bracketed IPv6 literal goes back into Host: with its brackets. */
	req_len = (size_t)snprintf(req, sizeof(req),
	                           "GET %s HTTP/1.0\r\nHost: %s%s%s:%s\r\nUser-Agent: sluicectl\r\n"
	                           "Accept: text/plain\r\nConnection: close\r\n\r\n",
	                           path, strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", port);
	if (req_len >= sizeof(req)) {
		snprintf(errbuf, errbuf_size, "request for \"%s\" too long", path);
		goto out;
	}
	while (off < req_len) {
		if (wait_fd(fd, POLLOUT, deadline) != 0)
			goto io_error;
		n = send(fd, req + off, req_len - off, MSG_NOSIGNAL);
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			goto io_error;
		if (n > 0)
			off += (size_t)n;
	}
	for (;;) {
		if (len + 4096 + 1 > cap) {
			if (cap >= MAX_RESPONSE) {
				snprintf(errbuf, errbuf_size, "response from %s:%s%s is larger than %d bytes", host,
				         port, path, MAX_RESPONSE);
				goto out;
			}
			cap = cap ? cap * 2 : 65536;
			p = realloc(buf, cap);
			if (p == NULL) {
				snprintf(errbuf, errbuf_size, "out of memory");
				goto out;
			}
			buf = p;
		}
		if (wait_fd(fd, POLLIN, deadline) != 0)
			goto io_error;
		n = recv(fd, buf + len, cap - len - 1, 0);
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			goto io_error;
		}
		len += (size_t)n;
	}
	if (buf == NULL)
		goto malformed;
	buf[len] = '\0';
	if (sscanf(buf, "HTTP/%*d.%*d %d", &resp->status) != 1)
		goto malformed;
	hdr_end = strstr(buf, "\r\n\r\n");
	if (hdr_end == NULL)
		goto malformed;
	hdr_end += 4;
	resp->body_len = len - (size_t)(hdr_end - buf);
	memmove(buf, hdr_end, resp->body_len + 1);
	resp->body = buf;
	buf = NULL; /* now owned by resp */
	rc = 0;
	goto out;
io_error:
	snprintf(errbuf, errbuf_size, "could not read %s from %s:%s: %s", path, host, port,
	         errno == ETIMEDOUT ? "timed out" : strerror(errno));
	goto out;
malformed:
	snprintf(errbuf, errbuf_size, "malformed HTTP response from %s:%s%s", host, port, path);
out:
	if (rc != 0)
		memset(resp, 0, sizeof(*resp));
	free(buf);
	close(fd);
	return rc;
}

/* Splits "http://host:port[/...]" into host (brackets of an IPv6 literal
 * removed) and port (80 when absent). Returns 0, or -1 when the URL is not
 * such a URL. */
static int
parse_url(const char *url, char *host, size_t host_size, char *port, size_t port_size)
{
	const char *p = url, *end, *colon;
	size_t n;

	if (strncmp(p, "http://", 7) == 0)
		p += 7;
	else if (strstr(p, "://") != NULL)
		return -1;
	end = p + strcspn(p, "/?#");
	if (*p == '[') {
		colon = memchr(p, ']', (size_t)(end - p));
		if (colon == NULL)
			return -1;
		n = (size_t)(colon - p - 1);
		if (n == 0 || n >= host_size)
			return -1;
		memcpy(host, p + 1, n);
		host[n] = '\0';
		colon++;
		if (colon != end && *colon != ':')
			return -1;
	} else {
		colon = memchr(p, ':', (size_t)(end - p));
		n = (size_t)((colon ? colon : end) - p);
		if (n == 0 || n >= host_size)
			return -1;
		memcpy(host, p, n);
		host[n] = '\0';
	}
	if (colon == NULL || colon == end) {
		snprintf(port, port_size, "80");
		return 0;
	}
	n = (size_t)(end - colon - 1);
	if (n == 0 || n >= port_size || strspn(colon + 1, "0123456789") < n)
		return -1;
	memcpy(port, colon + 1, n);
	port[n] = '\0';
	return 0;
}

/* ---- the exposition ------------------------------------------------------ */

struct sample {
	char *name;                        /* owned; the three below point into it */
	const char *label[MAX_LABELS];
	const char *value[MAX_LABELS];
	int n_labels;
	double v;
};

struct samples {
	struct sample *v;
	size_t n, cap;
};

static void
samples_clear(struct samples *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		free(s->v[i].name);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/* Parses one sample line ("name{a=\"x\",b=\"y\"} 1.5 [ts]") into *out, with
 * names and unescaped values copied into one buffer out->name owns. Returns
 * 0, or -1 when the line is not a sample. */
static int
parse_sample(const char *line, struct sample *out)
{
	size_t len = strlen(line);
	char *buf, *w, *end;
	const char *p = line;

	memset(out, 0, sizeof(*out));
	buf = malloc(len + 1);
	if (buf == NULL)
		return -1;
	w = buf;
	out->name = buf;
	while (*p && (strchr("_:", *p) || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
	              (p != line && *p >= '0' && *p <= '9')))
		*w++ = *p++;
	if (w == buf)
		goto err;
	*w++ = '\0';
	if (*p == '{') {
		p++;
		for (;;) {
			while (*p == ' ' || *p == ',')
				p++;
			if (*p == '}') {
				p++;
				break;
			}
			if (out->n_labels == MAX_LABELS)
				goto err;
			out->label[out->n_labels] = w;
			while (*p && *p != '=' && *p != ' ')
				*w++ = *p++;
			*w++ = '\0';
			while (*p == ' ')
				p++;
			if (*p++ != '=')
				goto err;
			while (*p == ' ')
				p++;
			if (*p++ != '"')
				goto err;
			out->value[out->n_labels] = w;
			while (*p && *p != '"') {
				if (*p == '\\' && p[1] != '\0') {
					p++;
					*w++ = *p == 'n' ? '\n' : *p;
					p++;
					continue;
				}
				*w++ = *p++;
			}
			if (*p++ != '"')
				goto err;
			*w++ = '\0';
			out->n_labels++;
		}
	}
	while (*p == ' ' || *p == '\t')
		p++;
	/* strtod() reads NaN, +Inf and -Inf as Prometheus writes them. */
	out->v = strtod(p, &end);
	if (end == p || (*end != '\0' && *end != ' ' && *end != '\t'))
		goto err;
	return 0;
err:
	free(buf);
	memset(out, 0, sizeof(*out));
	return -1;
}

/* Parses the exposition in text (modified: lines are cut in place). Comment
 * lines are skipped; a malformed line is reported once and skipped. Returns
 * 0, or -1 when out of memory. */
static int
parse_exposition(char *text, struct samples *s)
{
	char *line, *next;
	struct sample smp, *v;
	int reported = 0;

	for (line = text; line != NULL && *line != '\0'; line = next) {
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		if (*line == '#' || *line == '\0')
			continue;
		if (parse_sample(line, &smp) != 0) {
			if (!reported++)
				sl_ctl_error("skipping a malformed metrics line: %.80s", line);
			continue;
		}
		if (s->n == s->cap) {
			s->cap = s->cap ? s->cap * 2 : 128;
			v = realloc(s->v, s->cap * sizeof(*v));
			if (v == NULL) {
				free(smp.name);
				return -1;
			}
			s->v = v;
		}
		s->v[s->n++] = smp;
	}
	return 0;
}

/* Returns the value of label `name` of sample smp (borrowed), or "". */
static const char *
label(const struct sample *smp, const char *name)
{
	int i;

	for (i = 0; i < smp->n_labels; i++)
		if (strcmp(smp->label[i], name) == 0)
			return smp->value[i];
	return "";
}

/* Returns the first sample named `name`, or NULL. */
static const struct sample *
find(const struct samples *s, const char *name)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		if (strcmp(s->v[i].name, name) == 0)
			return &s->v[i];
	return NULL;
}

/* ---- the summary --------------------------------------------------------- */

/* Returns a new JSON number: an integer when v is one (counters), else a real. */
static json_t *
num(double v)
{
	if (v == floor(v) && fabs(v) < 9007199254740992.0)
		return json_integer((json_int_t)v);
	return json_real(v);
}

/* Adds v at obj[k1][k2] (k2 NULL: obj[k1]), creating members as needed.
 * Returns 0, or -1 when out of memory. obj is borrowed. */
static int
json_add(json_t *obj, const char *k1, const char *k2, double v)
{
	json_t *inner = obj, *cur;
	const char *key = k1;

	if (k2 != NULL) {
		inner = json_object_get(obj, k1);
		if (inner == NULL) {
			if (json_object_set_new(obj, k1, json_object()) != 0)
				return -1;
			inner = json_object_get(obj, k1);
		}
		key = k2;
	}
	cur = json_object_get(inner, key);
	return json_object_set_new(inner, key, num((cur ? json_number_value(cur) : 0) + v));
}

/* Prints a JSON number as an integer when it is one. */
static void
print_num(double v)
{
	if (v == floor(v) && fabs(v) < 1e15)
		printf("%.0f", v);
	else
		printf("%g", v);
}

/* Prints obj (name -> number or name -> {name -> number}) as indented lines. */
static void
print_tree(const char *title, json_t *obj)
{
	const char *k, *k2;
	json_t *v, *v2;

	if (json_object_size(obj) == 0) {
		printf("%-17s none\n", title);
		return;
	}
	printf("%s\n", title);
	json_object_foreach(obj, k, v) {
		printf("  %-30s", k);
		if (json_is_object(v)) {
			json_object_foreach(v, k2, v2) {
				printf(" %s=", k2);
				print_num(json_number_value(v2));
			}
		} else {
			printf(" ");
			print_num(json_number_value(v));
		}
		printf("\n");
	}
}

/* Builds the summary object from the samples: a new reference, or NULL when
 * out of memory. */
static json_t *
summarise(const struct samples *s)
{
	json_t *sum, *jobs, *retries, *dead, *lag, *pg, *kafka, *dur, *mean = NULL, *v, *c, *sm;
	const struct sample *smp;
	const char *k;
	char part[512];
	size_t i;
	int oom = 0;

	sum = json_object();
	jobs = json_object();
	retries = json_object();
	dead = json_object();
	lag = json_object();
	pg = json_object();
	kafka = json_object();
	dur = json_object();
	if (sum == NULL || jobs == NULL || retries == NULL || dead == NULL || lag == NULL || pg == NULL ||
	    kafka == NULL || dur == NULL)
		goto err;
	for (i = 0; i < s->n && !oom; i++) {
		smp = &s->v[i];
		if (strcmp(smp->name, "sluice_jobs_total") == 0) {
			oom = json_add(jobs, label(smp, "type"), label(smp, "status"), smp->v);
		} else if (strcmp(smp->name, "sluice_job_retries_total") == 0) {
			oom = json_add(retries, label(smp, "type"), NULL, smp->v);
		} else if (strcmp(smp->name, "sluice_dead_letters_total") == 0) {
			oom = json_add(dead, label(smp, "type"), label(smp, "code"), smp->v);
		} else if (strcmp(smp->name, "sluice_pg_errors_total") == 0) {
			oom = json_add(pg, label(smp, "class"), NULL, smp->v);
		} else if (strcmp(smp->name, "sluice_kafka_errors_total") == 0) {
			oom = json_add(kafka, label(smp, "error"), NULL, smp->v);
		} else if (strcmp(smp->name, "sluice_job_duration_seconds_sum") == 0) {
			oom = json_add(dur, label(smp, "type"), "sum", smp->v);
		} else if (strcmp(smp->name, "sluice_job_duration_seconds_count") == 0) {
			oom = json_add(dur, label(smp, "type"), "count", smp->v);
		} else if (strcmp(smp->name, "sluice_consumer_lag_messages") == 0 ||
		           strcmp(smp->name, "sluice_consumer_lag_seconds") == 0) {
			snprintf(part, sizeof(part), "%s[%s]", label(smp, "topic"), label(smp, "partition"));
			oom = json_add(lag, part, smp->name[sizeof("sluice_consumer_lag_") - 1] == 'm' ? "messages"
			                                                                              : "seconds",
			               smp->v);
		}
		oom = oom != 0;
	}
	if (oom)
		goto err;
	/* Mean duration per type, from the histogram's sum and count. */
	mean = json_object();
	if (mean == NULL)
		goto err;
	json_object_foreach(dur, k, v) {
		c = json_object_get(v, "count");
		sm = json_object_get(v, "sum");
		if (c != NULL && sm != NULL && json_number_value(c) > 0 &&
		    json_object_set_new(mean, k, json_real(json_number_value(sm) / json_number_value(c))) != 0)
			goto err;
	}
	json_decref(dur);
	dur = NULL;
	if ((smp = find(s, "sluice_build_info")) != NULL &&
	    json_object_set_new(sum, "version", json_string(label(smp, "version"))) != 0)
		goto err;
	if ((smp = find(s, "sluice_jobs_in_flight")) != NULL &&
	    json_object_set_new(sum, "in_flight", num(smp->v)) != 0)
		goto err;
	if ((smp = find(s, "sluice_executor_utilisation_ratio")) != NULL &&
	    json_object_set_new(sum, "executor_utilisation", json_real(smp->v)) != 0)
		goto err;
	/* Each set_new steals its value, also on failure. */
	oom = json_object_set_new(sum, "jobs", jobs) != 0;
	oom |= json_object_set_new(sum, "job_duration_mean_seconds", mean) != 0;
	oom |= json_object_set_new(sum, "retries", retries) != 0;
	oom |= json_object_set_new(sum, "dead_letters", dead) != 0;
	oom |= json_object_set_new(sum, "lag", lag) != 0;
	oom |= json_object_set_new(sum, "pg_errors", pg) != 0;
	oom |= json_object_set_new(sum, "kafka_errors", kafka) != 0;
	if (oom) {
		json_decref(sum);
		return NULL;
	}
	return sum;
err:
	json_decref(sum);
	json_decref(jobs);
	json_decref(retries);
	json_decref(dead);
	json_decref(lag);
	json_decref(pg);
	json_decref(kafka);
	json_decref(dur);
	json_decref(mean);
	return NULL;
}

/* Writes the URL at which a worker listening on `listen` (http.listen:
 * HOST:PORT, [IPV6]:PORT or :PORT, as sl_http_listen_check() accepts) is
 * reached from this host into buf: an empty host is loopback, as the worker
 * takes it, and a wildcard (0.0.0.0, [::]) is reached on loopback too.
 * Returns 0, or -1 with the reason in errbuf: the listener is off (""), or
 * its port is 0 (ephemeral: only the worker knows it). */
int
sl_ctl_listen_url(const char *listen, char *buf, size_t buf_size, char *errbuf, size_t errbuf_size)
{
	const char *colon = strrchr(listen, ':');
	char host[128];
	size_t n;

	if (*listen == '\0') {
		snprintf(errbuf, errbuf_size, "the worker's HTTP listener is off (http.listen is empty)");
		return -1;
	}
	if (colon == NULL || strcmp(colon + 1, "0") == 0 || (n = (size_t)(colon - listen)) >= sizeof(host)) {
		snprintf(errbuf, errbuf_size, "http.listen \"%s\" does not name a fixed port", listen);
		return -1;
	}
	memcpy(host, listen, n);
	host[n] = '\0';
	if (n == 0 || strcmp(host, "localhost") == 0 || strcmp(host, "0.0.0.0") == 0)
		snprintf(host, sizeof(host), "127.0.0.1");
	else if (strcmp(host, "[::]") == 0)
		snprintf(host, sizeof(host), "[::1]");
	snprintf(buf, buf_size, "http://%s%s", host, colon);
	return 0;
}

static void
print_summary(const char *url, json_t *sum)
{
	json_t *v;

	printf("worker            %s\n", url);
	printf("version           %s\n", json_object_get(sum, "version") ? json_string_value(json_object_get(sum, "version")) : "unknown");
	printf("ready             %s\n", json_is_true(json_object_get(sum, "ready")) ? "yes" : "no");
	if ((v = json_object_get(sum, "ready_reason")) != NULL)
		printf("                  %s\n", json_string_value(v));
	if ((v = json_object_get(sum, "in_flight")) != NULL) {
		printf("in flight         ");
		print_num(json_number_value(v));
		printf("\n");
	}
	if ((v = json_object_get(sum, "executor_utilisation")) != NULL)
		printf("executors busy    %.0f%%\n", json_number_value(v) * 100);
	print_tree("jobs", json_object_get(sum, "jobs"));
	print_tree("mean duration (s)", json_object_get(sum, "job_duration_mean_seconds"));
	print_tree("retries", json_object_get(sum, "retries"));
	print_tree("dead letters", json_object_get(sum, "dead_letters"));
	print_tree("lag", json_object_get(sum, "lag"));
	print_tree("postgres errors", json_object_get(sum, "pg_errors"));
	print_tree("kafka errors", json_object_get(sum, "kafka_errors"));
}

json_t *
sl_ctl_status_json(const char *url, int timeout_ms, char *errbuf, size_t errbuf_size)
{
	struct response metrics = { 0 }, ready = { 0 };
	struct samples samples = { 0 };
	char host[256], port[16];
	json_t *sum = NULL;
	char *nl;
	int is_ready;

	if (parse_url(url, host, sizeof(host), port, sizeof(port)) != 0) {
		snprintf(errbuf, errbuf_size, "a worker URL must be http://HOST:PORT, not \"%s\"", url);
		return NULL;
	}
	if (http_get(host, port, "/metrics", timeout_ms, &metrics, errbuf, errbuf_size) != 0)
		goto out;
	if (metrics.status != 200) {
		snprintf(errbuf, errbuf_size, "%s/metrics answered HTTP %d", url, metrics.status);
		goto out;
	}
	if (http_get(host, port, "/readyz", timeout_ms, &ready, errbuf, errbuf_size) != 0)
		goto out;
	if (parse_exposition(metrics.body, &samples) != 0 || (sum = summarise(&samples)) == NULL)
		goto oom;
	is_ready = ready.status == 200;
	if (json_object_set_new(sum, "url", json_string(url)) != 0 ||
	    json_object_set_new(sum, "ready", json_boolean(is_ready)) != 0)
		goto oom;
	if (!is_ready) {
		/* The worker says why in one line ("not ready: no partitions assigned"). */
		nl = strchr(ready.body, '\n');
		if (nl != NULL)
			*nl = '\0';
		if (json_object_set_new(sum, "ready_reason", json_stringn(ready.body, strlen(ready.body))) != 0)
			goto oom;
	}
	goto out;
oom:
	snprintf(errbuf, errbuf_size, "out of memory");
	json_decref(sum);
	sum = NULL;
out:
	samples_clear(&samples);
	free(metrics.body);
	free(ready.body);
	return sum;
}

static void
usage(FILE *out)
{
	fprintf(out,
	        "usage: sluicectl status [-c FILE | --url URL | URL] [--json]\n"
	        "\n"
	        "Reads a worker's /metrics and /readyz and prints a summary: jobs by type\n"
	        "and outcome, in-flight jobs, retries, dead letters, lag per partition,\n"
	        "executor utilisation, errors and the build.\n"
	        "\n"
	        "  -c, --config FILE\n"
	        "              the worker's configuration: its http.listen is the URL\n"
	        "              (a wildcard or empty host is reached on loopback)\n"
	        "  --url URL   the worker's HTTP listener (default " DEFAULT_URL ")\n"
	        "  --json      print one JSON object instead\n"
	        "\n"
	        "Exit status: 0 reachable and ready, 1 reachable but not ready,\n"
	        "2 unreachable or usage error.\n");
}

int
sl_ctl_status(int argc, char **argv)
{
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "url", required_argument, NULL, 'u' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *url = NULL, *config_path = NULL;
	struct sl_config *cfg = NULL;
	char url_buf[256];
	char host[256], port[16], errbuf[1024], *s;
	json_t *sum = NULL;
	int opt, as_json = 0, rc = 2, is_ready;

	sl_ctl_set_command("status");
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":hc:", options, NULL)) != -1) {
		switch (opt) {
		case 'c': config_path = optarg; break;
		case 'u': url = optarg; break;
		case 'j': as_json = 1; break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return sl_ctl_option_error(opt, argc, argv);
		}
	}
	if (sl_ctl_operand(argc, argv, "URL", &url) != 0)
		return 2;
	if (config_path != NULL && url != NULL) {
		sl_ctl_error("-c and a URL are alternatives: give one");
		return 2;
	}
	if (config_path != NULL) {
		if ((cfg = sl_ctl_config_load(config_path)) == NULL)
			return 2;
		rc = sl_ctl_listen_url(cfg->http_listen, url_buf, sizeof(url_buf), errbuf, sizeof(errbuf));
		sl_ctl_config_release(cfg);
		if (rc != 0) {
			sl_ctl_error("%s: %s", config_path, errbuf);
			return 2;
		}
		rc = 2;
		url = url_buf;
	}
	if (url == NULL)
		url = DEFAULT_URL;
	if (parse_url(url, host, sizeof(host), port, sizeof(port)) != 0) {
		sl_ctl_error("--url must be http://HOST:PORT, not \"%s\"", url);
		return 2;
	}

	sum = sl_ctl_status_json(url, TIMEOUT_MS, errbuf, sizeof(errbuf));
	if (sum == NULL) {
		sl_ctl_error("%s", errbuf);
		goto out;
	}
	is_ready = json_is_true(json_object_get(sum, "ready"));
	if (as_json) {
		s = json_dumps(sum, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
		if (s == NULL) {
			sl_ctl_error("out of memory");
			goto out;
		}
		puts(s);
		free(s);
	} else {
		print_summary(url, sum);
	}
	rc = is_ready ? 0 : 1;
out:
	fflush(stdout);
	json_decref(sum);
	return rc;
}
