/* jobtypes.c -- the job types a worker serves: each type's handler found
 * (built in, "sql:", "plugin:"), its schema loaded, its role and
 * statement_timeout made into statements; and the checks of all that which
 * `sluice-worker -n` and `sluicectl check-config` run.
 *
 * Not for: running the handlers (txn.c) or reading the configuration file
 * (config.c).
 */
#include "jobtypes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handler_int.h"
#include "http.h"
#include "log.h"
#include "pg.h"
#include "plugin.h"
#include "sqlhandler.h"
#include "worker.h"

/* Returns `set local role "ROLE"` (malloc'ed), or NULL for no role. */
static char *
enter_role_sql(const char *role)
{
	size_t n = 0;
	char *sql;
	const char *c;

	if (role == NULL)
		return NULL;
	if ((sql = malloc(strlen(role) * 2 + 32)) == NULL)
		abort();
	n = (size_t)sprintf(sql, "set local role \"");
	for (c = role; *c; c++) {
		if (*c == '"')
			sql[n++] = '"';
		sql[n++] = *c;
	}
	strcpy(sql + n, "\"");
	return sql;
}

void
sl_jobtypes_release(struct sl_job_type_rt *types, size_t n)
{
	size_t i;

	for (i = 0; types != NULL && i < n; i++) {
		sl_sql_handler_destroy(types[i].handler);
		free(types[i].enter_role);
		free(types[i].enter_timeout);
		sl_schema_destroy(types[i].schema);
	}
	free(types);
}

int
sl_jobtypes_check_sql(const struct sl_config *cfg, const struct sl_job_type_rt *types, PGconn *conn, int warn,
                   char *errbuf, size_t errbuf_size)
{
	char err[768];
	size_t i;
	int bad = 0;

	for (i = 0; i < cfg->n_jobs; i++) {
		if (!sl_sql_handler_is(types[i].handler) ||
		    sl_sql_handler_check(conn, types[i].handler, cfg->jobs[i].role, err, sizeof(err)) == 0)
			continue;
		if (warn)
			sl_log_warn("%s:%d: job type \"%s\": %s; its jobs wait until it is there", cfg->path,
			            cfg->jobs[i].line, cfg->jobs[i].type, err);
		else if (bad == 0)
			snprintf(errbuf, errbuf_size, "%s:%d: job type \"%s\": %s", cfg->path, cfg->jobs[i].line,
			         cfg->jobs[i].type, err);
		bad++;
	}
	return bad;
}

/* The program's built-in handlers (sl_worker_set_builtins): set before any
 * other call, read-only afterwards. */
static const struct sl_handler *builtins;
static size_t n_builtins;

void
sl_worker_set_builtins(const struct sl_handler *table, size_t n)
{
	builtins = table;
	n_builtins = n;
}

/* Returns the built-in handler named `name`, or NULL. */
static const struct sl_handler *
find_builtin(const char *name)
{
	size_t i;

	for (i = 0; i < n_builtins; i++)
		if (strcmp(builtins[i].name, name) == 0)
			return &builtins[i];
	return NULL;
}

int
sl_jobtypes_resolve(const struct sl_config *cfg, struct sl_job_type_rt *out, char *errbuf, size_t errbuf_size)
{
	size_t i;
	char path[4096], err[1024];

	for (i = 0; i < cfg->n_jobs; i++) {
		const struct sl_job_type *jt = &cfg->jobs[i];
		const struct sl_handler *h;

		if (strncmp(jt->handler, "sql:", 4) == 0) {
			h = sl_sql_handler_new(jt->handler + 4, jt->statement_timeout > 0, err, sizeof(err));
			if (h == NULL) {
				snprintf(errbuf, errbuf_size, "%s:%d: job type \"%s\": %s", cfg->path, jt->line, jt->type,
				         err);
				return -1;
			}
		} else if (sl_plugin_is_spec(jt->handler)) {
			/* "plugin:PATH.so:NAME": loaded once, kept for the process. */
			if ((h = sl_plugin_find(cfg, jt->handler, err, sizeof(err))) == NULL) {
				snprintf(errbuf, errbuf_size, "%s:%d: handler of job type \"%s\": %s", cfg->path,
				         jt->line, jt->type, err);
				return -1;
			}
		} else if ((h = find_builtin(jt->handler)) == NULL) {
			snprintf(errbuf, errbuf_size, "%s:%d: unknown handler \"%s\" for job type \"%s\"", cfg->path,
			         jt->line, jt->handler, jt->type);
			return -1;
		}
		if (out != NULL) {
			out[i].conf = jt;
			out[i].handler = h;
			out[i].enter_role = enter_role_sql(jt->role);
			if (jt->statement_timeout > 0 &&
			    asprintf(&out[i].enter_timeout, "set local statement_timeout = %ld",
			             (long)(jt->statement_timeout * 1000 + 0.5)) < 0)
				abort();
		} else {
			sl_sql_handler_destroy(h);
		}
		if (jt->schema_path == NULL)
			continue;
		sl_config_path(cfg, jt->schema_path, path, sizeof(path));
		sl_schema_t *s = sl_schema_load_file(path, NULL, 0, err, sizeof(err));
		if (s == NULL) {
			snprintf(errbuf, errbuf_size, "%s:%d: schema of job type \"%s\": %s", cfg->path, jt->line, jt->type,
			         err);
			return -1;
		}
		if (out != NULL)
			out[i].schema = s;
		else
			sl_schema_destroy(s);
	}
	return 0;
}

int
sl_worker_check(const struct sl_config *cfg, char *errbuf, size_t errbuf_size)
{
	char err[512];

	if (*cfg->http_listen != '\0' && sl_http_listen_check(cfg->http_listen, err, sizeof(err)) < 0) {
		snprintf(errbuf, errbuf_size, "%s: http.listen: %s", cfg->path, err);
		return -1;
	}
	return sl_jobtypes_resolve(cfg, NULL, errbuf, errbuf_size);
}

int
sl_worker_check_deep(const struct sl_config *cfg, char *errbuf, size_t errbuf_size)
{
	struct sl_job_type_rt *types;
	char err[512];
	PGconn *conn = NULL;
	size_t i;
	int rc = -1, any = 0;

	if (sl_worker_check(cfg, errbuf, errbuf_size) < 0)
		return -1;
	if ((types = calloc(cfg->n_jobs ? cfg->n_jobs : 1, sizeof(*types))) == NULL)
		abort();
	if (sl_jobtypes_resolve(cfg, types, errbuf, errbuf_size) < 0)
		goto out;
	for (i = 0; i < cfg->n_jobs; i++)
		any |= sl_sql_handler_is(types[i].handler);
	if (!any) {
		rc = 0;
		goto out;
	}
	/* SQL handlers are checked where they run. */
	if ((conn = sl_pg_connect(cfg->pg_conninfo, "sluice-worker-check", err, sizeof(err))) == NULL) {
		snprintf(errbuf, errbuf_size, "%s: could not connect to postgresql to check the sql handlers: %s",
		         cfg->path, err);
		goto out;
	}
	rc = sl_jobtypes_check_sql(cfg, types, conn, 0, errbuf, errbuf_size) == 0 ? 0 : -1;
out:
	PQfinish(conn);
	sl_jobtypes_release(types, cfg->n_jobs);
	return rc;
}
