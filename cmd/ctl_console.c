/* ctl_console.c -- `sluicectl console`: an operator's console in the browser.
 *
 * Serves a few server-rendered pages (ctl_console_pages.c) on libmicrohttpd,
 * a thread per connection so that one slow source holds up only the page
 * that asked for it. Every page reads its sources itself with short
 * timeouts (ctl_sources.h, PostgreSQL), so a page with PostgreSQL or Kafka
 * down still answers within a few seconds and says which is down. A sampler
 * thread polls the workers' /metrics every SL_CONSOLE_SAMPLE_S seconds and
 * keeps an hour of fleet-wide throughput for the fleet page
 * (ctl_console_sampler.c).
 *
 * Security model: the listener is loopback unless --listen says otherwise,
 * and then it refuses to start without a token (SLUICE_CONSOLE_TOKEN or
 * --token-file), which every request must then carry (HTTP basic auth with
 * the token as password, or a bearer token). On loopback the Host header
 * must name loopback (DNS rebinding). Actions (replay) are POSTs that must
 * carry the process's CSRF token and, when the browser sends one, an Origin
 * that is this console. Responses forbid framing, inline script and
 * sniffing (Content-Security-Policy). Secrets (conninfo, Kafka properties)
 * are never shown: pages name sources, not their settings.
 *
 * Not for: TLS (put a reverse proxy in front), changing anything but
 * replaying dead letters, or serving more than a handful of operators.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "config.h"
#include "ctl.h"
#include "ctl_common.h"
#include "ctl_console.h"
#include "ctl_sources.h"
#include "http.h"

#define DEFAULT_LISTEN  "127.0.0.1:9188"
#define DEFAULT_DLQ     "jobs.dlq"
#define DEFAULT_GROUP   "sluice"
#define MAX_FORM        16384
#define MAX_CONNECTIONS 64u
#define IDLE_TIMEOUT_S  30u

/* ---- sources ------------------------------------------------------------- */

PGconn *
sl_console_pg(const struct console *c, char *errbuf, size_t errbuf_size)
{
	/* The conninfo (or URI) is expanded in place of dbname; the keywords
	 * after it override what it says. An empty one is libpq's PG*
	 * environment, as for the worker. */
	const char *keys[] = { "dbname", "connect_timeout", "application_name", "options", NULL };
	const char *vals[] = { c->conninfo, "2", "sluicectl-console", "-c statement_timeout=5000", NULL };
	PGconn *conn = PQconnectdbParams(keys, vals, 1);

	if (conn == NULL) {
		snprintf(errbuf, errbuf_size, "out of memory");
		return NULL;
	}
	if (PQstatus(conn) != CONNECTION_OK) {
		/* libpq's message names host and port, never the password. */
		snprintf(errbuf, errbuf_size, "%s", PQerrorMessage(conn));
		errbuf[strcspn(errbuf, "\n")] = '\0';
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

int
sl_console_kafka_probe(const struct console *c, char *errbuf, size_t errbuf_size)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_conf_t *conf;
	rd_kafka_resp_err_t err;
	rd_kafka_t *rk;
	char why[512];

	conf = sl_ctl_kafka_conf(c->brokers, why, sizeof(why));
	if (conf == NULL) {
		snprintf(errbuf, errbuf_size, "%s", why);
		return -1;
	}
	rk = sl_ctl_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why)); /* conf now owned by rk */
	if (rk == NULL) {
		snprintf(errbuf, errbuf_size, "%s", why);
		return -1;
	}
	err = rd_kafka_metadata(rk, 0, NULL, &md, SL_CONSOLE_TIMEOUT_MS);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR && md->broker_cnt == 0)
		err = RD_KAFKA_RESP_ERR__TRANSPORT;
	if (md != NULL)
		rd_kafka_metadata_destroy(md);
	rd_kafka_destroy(rk);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(errbuf, errbuf_size, "no answer from brokers \"%s\" within %d s: %s", c->brokers,
		         SL_CONSOLE_TIMEOUT_MS / 1000, rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

/* ---- requests ------------------------------------------------------------ */

const char *
sl_console_arg(const struct sl_console_request *rq, const char *name)
{
	const char *v = MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, name);

	return v != NULL && *v != '\0' ? v : NULL;
}

const char *
sl_console_field(const struct sl_console_request *rq, const char *name, char *buf, size_t buf_size)
{
	size_t name_len = strlen(name), n;
	const char *p = rq->form, *end, *eq;

	while (p != NULL && *p != '\0') {
		end = p + strcspn(p, "&");
		eq = memchr(p, '=', (size_t)(end - p));
		if (eq != NULL && (size_t)(eq - p) == name_len && memcmp(p, name, name_len) == 0) {
			n = (size_t)(end - eq - 1);
			if (n == 0 || n >= buf_size)
				return NULL;
			memcpy(buf, eq + 1, n);
			buf[n] = '\0';
			/* '+' is a space in a form; MHD_http_unescape() does %XX. */
			for (char *q = buf; *q; q++)
				if (*q == '+')
					*q = ' ';
			buf[MHD_http_unescape(buf)] = '\0';
			return *buf != '\0' ? buf : NULL;
		}
		p = *end ? end + 1 : end;
	}
	return NULL;
}

/* Compares two strings in time that depends only on their lengths. */
static int
same_secret(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i;
	unsigned char d = la != lb;

	for (i = 0; i < la && i < lb; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return d == 0;
}

/* Returns 1 when Host names this console on loopback ("127.0.0.1:PORT",
 * "localhost:PORT", "[::1]:PORT"). A page on another name (DNS rebinding)
 * could otherwise read the console from a hostile site. */
static int
loopback_host(const struct console *c, const char *host)
{
	char want[3][64];
	int i;

	if (host == NULL)
		return 0;
	snprintf(want[0], sizeof(want[0]), "127.0.0.1:%d", c->port);
	snprintf(want[1], sizeof(want[1]), "localhost:%d", c->port);
	snprintf(want[2], sizeof(want[2]), "[::1]:%d", c->port);
	for (i = 0; i < 3; i++)
		if (strcasecmp(host, want[i]) == 0)
			return 1;
	return 0;
}

/* Returns 1 when the request carries the token (basic auth with it as the
 * password, any user; or "Bearer TOKEN"). */
static int
authorised(const struct console *c, struct MHD_Connection *conn)
{
	char *user = NULL, *pass = NULL;
	const char *h;
	int ok = 0;

	if (c->token == NULL)
		return 1;
	h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	if (h != NULL && strncmp(h, "Bearer ", 7) == 0)
		return same_secret(h + 7, c->token);
	user = MHD_basic_auth_get_username_password(conn, &pass);
	if (pass != NULL)
		ok = same_secret(pass, c->token);
	MHD_free(user);
	MHD_free(pass);
	return ok;
}

/* Returns 1 when a POST may act: its CSRF field is the process's token and
 * its Origin, when the browser sent one, is this console's. */
static int
post_allowed(const struct sl_console_request *rq, struct MHD_Connection *conn)
{
	const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
	const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
	const char *site = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-Fetch-Site");
	char buf[128];
	const char *token = sl_console_field(rq, "csrf", buf, sizeof(buf));

	if (token == NULL || !same_secret(token, rq->c->csrf))
		return 0;
	if (site != NULL && strcmp(site, "same-origin") != 0 && strcmp(site, "none") != 0)
		return 0;
	if (origin != NULL && strcmp(origin, "null") != 0) {
		if (host == NULL || strncmp(origin, "http://", 7) != 0 || strcasecmp(origin + 7, host) != 0)
			return 0;
	}
	return 1;
}

static void
reply_text(struct sl_console_reply *r, unsigned int status, const char *text)
{
	r->status = status;
	r->content_type = "text/plain; charset=utf-8";
	sl_text_puts(&r->body, text);
}

/* Per-connection state: the POST body as it arrives. */
struct upload {
	char *body;
	size_t len;
	int too_large;
};

static enum MHD_Result
send_reply(struct MHD_Connection *conn, struct sl_console_reply *r, int ask_auth)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	if (r->body.oom) {
		free(r->body.p);
		r->body.p = NULL;
		r->body.len = 0;
		r->status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		r->content_type = "text/plain; charset=utf-8";
		r->body.oom = 0;
		sl_text_puts(&r->body, "out of memory\n");
	}
	resp = MHD_create_response_from_buffer(r->body.len, r->body.p ? r->body.p : (char *)"",
	                                       r->body.p ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	if (resp == NULL) {
		free(r->body.p);
		return MHD_NO;
	}
	r->body.p = NULL; /* now owned by resp */
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	MHD_add_response_header(resp, "Content-Security-Policy",
	                        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
	                        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, "X-Frame-Options", "DENY");
	MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
	if (ask_auth)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
		                        "Basic realm=\"sluice console\", charset=\"UTF-8\"");
	ret = MHD_queue_response(conn, r->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result
answer(void *cls, struct MHD_Connection *conn, const char *url, const char *method, const char *version,
       const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	struct console *c = cls;
	struct upload *up = *con_cls;
	struct sl_console_request rq;
	struct sl_console_reply r;
	const char *host;
	int is_post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
	char *p;

	(void)version;
	memset(&r, 0, sizeof(r));
	r.status = MHD_HTTP_OK;
	r.content_type = "text/html; charset=utf-8";
	if (is_post && up == NULL) {
		/* First call: headers only. The body follows in later calls. */
		up = calloc(1, sizeof(*up));
		if (up == NULL)
			return MHD_NO;
		*con_cls = up;
		return MHD_YES;
	}
	if (is_post && *upload_data_size > 0) {
		if (!up->too_large && up->len + *upload_data_size <= MAX_FORM) {
			p = realloc(up->body, up->len + *upload_data_size + 1);
			if (p == NULL)
				return MHD_NO;
			memcpy(p + up->len, upload_data, *upload_data_size);
			up->len += *upload_data_size;
			p[up->len] = '\0';
			up->body = p;
		} else {
			up->too_large = 1;
		}
		*upload_data_size = 0;
		return MHD_YES;
	}

	host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
	if (c->loopback && !loopback_host(c, host)) {
		reply_text(&r, MHD_HTTP_MISDIRECTED_REQUEST, "this console answers to 127.0.0.1, localhost and [::1] only\n");
		return send_reply(conn, &r, 0);
	}
	if (!authorised(c, conn)) {
		reply_text(&r, MHD_HTTP_UNAUTHORIZED, "authentication required\n");
		return send_reply(conn, &r, 1);
	}
	memset(&rq, 0, sizeof(rq));
	rq.c = c;
	rq.conn = conn;
	rq.path = url;
	rq.form = is_post ? up->body : NULL;
	if (strcmp(url, "/static/console.css") == 0 || strcmp(url, "/static/console.js") == 0) {
		int css = strcmp(url, "/static/console.css") == 0;

		r.content_type = css ? "text/css; charset=utf-8" : "text/javascript; charset=utf-8";
		sl_text_puts(&r.body, css ? sl_console_css : sl_console_js);
		return send_reply(conn, &r, 0);
	}
	if (is_post) {
		if (up->too_large) {
			reply_text(&r, 413u, "form too large\n");
			return send_reply(conn, &r, 0);
		}
		if (!post_allowed(&rq, conn)) {
			reply_text(&r, MHD_HTTP_FORBIDDEN, "forbidden: missing or wrong CSRF token, or a foreign origin\n");
			return send_reply(conn, &r, 0);
		}
		rq.post = 1;
		if (strcmp(url, "/dlq/replay") == 0)
			sl_console_page_replay(&rq, &r);
		else
			reply_text(&r, MHD_HTTP_NOT_FOUND, "not found\n");
		return send_reply(conn, &r, 0);
	}
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
		reply_text(&r, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
		return send_reply(conn, &r, 0);
	}
	if (strcmp(url, "/") == 0)
		sl_console_page_fleet(&rq, &r);
	else if (strcmp(url, "/job") == 0)
		sl_console_page_job(&rq, &r);
	else if (strcmp(url, "/dlq") == 0)
		sl_console_page_dlq(&rq, &r);
	else if (strcmp(url, "/dlq/letter") == 0)
		sl_console_page_letter(&rq, &r);
	else if (strcmp(url, "/dlq/replay") == 0)
		reply_text(&r, MHD_HTTP_METHOD_NOT_ALLOWED, "replay is a POST from the dead letters page\n");
	else if (strcmp(url, "/outbox") == 0)
		sl_console_page_outbox(&rq, &r);
	else
		sl_console_page_not_found(&rq, &r);
	return send_reply(conn, &r, 0);
}

static void
completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct upload *up = *con_cls;

	(void)cls;
	(void)conn;
	(void)toe;
	if (up != NULL) {
		free(up->body);
		free(up);
		*con_cls = NULL;
	}
}

/* ---- the command --------------------------------------------------------- */

static void
usage(FILE *out)
{
	fprintf(out,
	        "usage: sluicectl console [-c FILE] [--listen ADDR] [--worker URL]... [--token-file FILE]\n"
	        "\n"
	        "Serves an operator's console in the browser: the fleet (workers, lag,\n"
	        "throughput and failures over the last hour), a job's story (ledger row,\n"
	        "result copies, dead letter), dead letters (browse, replay) and the outbox\n"
	        "and schedules. It reads what the other commands read, with short timeouts:\n"
	        "a page with PostgreSQL or Kafka down says which is down.\n"
	        "\n"
	        "  -c, --config FILE  the worker's configuration: brokers, Kafka properties,\n"
	        "                     group, topics, dead-letter and result topics,\n"
	        "                     postgres.conninfo, and http.listen (a worker to poll)\n"
	        "  --listen ADDR      HOST:PORT, [IPV6]:PORT or :PORT to serve on (default\n"
	        "                     " DEFAULT_LISTEN "; port 0 picks one). Beyond loopback a token\n"
	        "                     is required.\n"
	        "  --worker URL       a worker's HTTP listener (http://HOST:PORT) to poll;\n"
	        "                     repeat for several (default: the configuration's\n"
	        "                     http.listen)\n"
	        "  --token-file FILE  the access token, first line of FILE (default:\n"
	        "                     $SLUICE_CONSOLE_TOKEN). With a token, every request needs\n"
	        "                     it: basic auth with the token as password, or a bearer token.\n"
	        "\n"
	        "Environment: SLUICE_KAFKA_BROKERS, SLUICE_PG_CONNINFO, SLUICE_CONSOLE_TOKEN.\n"
	        "Prints \"listening on http://HOST:PORT\" once serving; SIGINT or SIGTERM stops it.\n");
}

/* Reads the first line of path into a new string; NULL after reporting why. */
static char *
read_token(const char *path)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		sl_ctl_error("could not open token file \"%s\": %m", path);
		return NULL;
	}
	n = getline(&line, &cap, f);
	fclose(f);
	if (n <= 0) {
		free(line);
		sl_ctl_error("token file \"%s\" is empty", path);
		return NULL;
	}
	line[strcspn(line, "\r\n")] = '\0';
	return line;
}

/* Returns 1 when ss is a loopback address (127.0.0.0/8 or ::1). */
static int
is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)ss)->sin6_addr);
	return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
}

int
sl_ctl_console(int argc, char **argv)
{
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "listen", required_argument, NULL, 'l' },
		{ "worker", required_argument, NULL, 'w' },
		{ "token-file", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config_path = NULL, *listen = DEFAULT_LISTEN, *token_file = NULL, *env;
	struct sl_config *cfg = NULL;
	struct MHD_Daemon *daemon = NULL;
	const union MHD_DaemonInfo *info;
	struct sockaddr_storage ss;
	socklen_t ss_len;
	struct console c;
	unsigned char rnd[16];
	char errbuf[512], url_buf[256], *token = NULL;
	pthread_t sampler;
	int opt, rc = 2, sampler_started = 0;
	size_t i;

	memset(&c, 0, sizeof(c));
	sl_ctl_set_command("console");
	c.workers = calloc((size_t)argc + 1, sizeof(*c.workers));
	if (c.workers == NULL) {
		sl_ctl_error("out of memory");
		return 2;
	}
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":hc:", options, NULL)) != -1) {
		switch (opt) {
		case 'c': config_path = optarg; break;
		case 'l': listen = optarg; break;
		case 'w': c.workers[c.n_workers++] = optarg; break;
		case 't': token_file = optarg; break;
		case 'h':
			usage(stdout);
			rc = 0;
			goto out;
		default:
			rc = sl_ctl_option_error(opt, argc, argv);
			goto out;
		}
	}
	if (optind != argc) {
		sl_ctl_argument_error(argv[optind]);
		goto out;
	}
	/* The worker's listener's syntax: an empty host is loopback too. */
	if (sl_http_listen_addr(listen, &ss, &ss_len, errbuf, sizeof(errbuf)) != 0) {
		sl_ctl_error("--listen: %s", errbuf);
		goto out;
	}
	c.loopback = is_loopback(&ss);
	if (token_file != NULL) {
		if ((token = read_token(token_file)) == NULL)
			goto out;
	} else if ((env = getenv("SLUICE_CONSOLE_TOKEN")) != NULL && *env != '\0') {
		token = strdup(env);
	}
	if (token != NULL && strlen(token) < 16) {
		sl_ctl_error("the console token must be at least 16 characters long");
		goto out;
	}
	c.token = token;
	if (!c.loopback && c.token == NULL) {
		sl_ctl_error("refusing to listen on \"%s\" beyond loopback without a token: set SLUICE_CONSOLE_TOKEN "
		             "or --token-file", listen);
		goto out;
	}
	if (config_path != NULL && (cfg = sl_ctl_config_load(config_path)) == NULL)
		goto out;
	c.cfg = cfg;
	c.brokers = sl_ctl_brokers(NULL);
	if (cfg != NULL) {
		c.conninfo = cfg->pg_conninfo;
		c.group = cfg->group;
		c.topics = cfg->topics;
		c.n_topics = cfg->n_topics;
		c.dlq_topic = cfg->dlq_topic;
		c.result_topic = cfg->result_topic;
		if (c.n_workers == 0 && sl_ctl_listen_url(cfg->http_listen, url_buf, sizeof(url_buf), errbuf,
		                                          sizeof(errbuf)) == 0)
			c.workers[c.n_workers++] = url_buf;
	} else {
		env = getenv("SLUICE_PG_CONNINFO");
		c.conninfo = env != NULL ? env : "";
		c.group = DEFAULT_GROUP;
		c.dlq_topic = DEFAULT_DLQ;
		c.result_topic = "job-results";
	}
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		sl_ctl_error("could not read random bytes for the CSRF token: %m");
		goto out;
	}
	for (i = 0; i < sizeof(rnd); i++)
		snprintf(c.csrf + 2 * i, 3, "%02x", rnd[i]);
	if (sl_console_sampler_init(&c) != 0) {
		sl_ctl_error("out of memory");
		goto out;
	}

	/* Known before the first request; port 0 is replaced by the one bound. */
	c.port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
	                                  : ntohs(((struct sockaddr_in *)&ss)->sin_port);
	sl_ctl_catch_interrupts();
	daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
	                                  (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0) | MHD_USE_ERROR_LOG,
	                          0, NULL, NULL, answer, &c, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
	                          MHD_OPTION_CONNECTION_LIMIT, MAX_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT,
	                          IDLE_TIMEOUT_S, MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_END);
	if (daemon == NULL) {
		sl_ctl_error("could not listen on \"%s\" (address in use?)", listen);
		goto out;
	}
	info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
	c.port = info != NULL ? info->port : 0;
	if (pthread_create(&sampler, NULL, sl_console_sampler_main, &c) != 0) {
		sl_ctl_error("could not start the sampler thread");
		goto out;
	}
	sampler_started = 1;
	if (ss.ss_family == AF_INET6) {
		char a[INET6_ADDRSTRLEN];

		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, a, sizeof(a));
		fprintf(stderr, "sluicectl console: listening on http://[%s]:%d\n", a, c.port);
	} else {
		char a[INET_ADDRSTRLEN];

		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, a, sizeof(a));
		fprintf(stderr, "sluicectl console: listening on http://%s:%d\n", a, c.port);
	}
	for (i = 0; i < c.n_workers; i++)
		fprintf(stderr, "sluicectl console: polling worker %s\n", c.workers[i]);
	/* The signal may land on any thread, so poll the flag. */
	while (!sl_ctl_interrupted())
		usleep(200 * 1000);
	rc = 0;
out:
	if (daemon != NULL)
		MHD_stop_daemon(daemon); /* waits for the connection threads */
	if (sampler_started) {
		pthread_mutex_lock(&c.sampler.lock);
		c.sampler.stop = 1;
		pthread_cond_signal(&c.sampler.wake);
		pthread_mutex_unlock(&c.sampler.lock);
		pthread_join(sampler, NULL);
	}
	if (c.sampler.latest != NULL || c.sampler.error != NULL)
		sl_console_sampler_destroy(&c);
	free(c.workers);
	free(token);
	sl_ctl_config_release(cfg); /* after the clients that use its properties */
	return rc;
}
