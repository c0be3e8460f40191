/* probe.c -- a plugin for tests/system/test_plugins.py: handlers that show
 * what the job looks like through <sluice/handler.h>, and builds that are
 * wrong on purpose.
 *
 *   cc -shared -fPIC -o probe.so probe.c $(pkg-config --cflags sluice) [-DCASE]
 *
 * CASE is one of WRONG_ABI (declares ABI version 999), NO_MAGIC (no
 * SLUICE_PLUGIN) and FAILING_INIT (sluice_plugin_init refuses to start).
 * Handlers: probe_echo (succeeds with the job's attributes as its output),
 * probe_commit (sends COMMIT, which the worker refuses) and probe_reject
 * (rejects with the code in data.code).
 */
#include <stdio.h>
#include <string.h>

#include <sluice/handler.h>

#if defined(WRONG_ABI)
SLUICE_EXPORT const struct sluice_plugin_magic sluice_plugin_magic = {
	SLUICE_PLUGIN_MAGIC, 999, sizeof(struct sluice_plugin_magic), JANSSON_MAJOR_VERSION
};
#elif !defined(NO_MAGIC)
SLUICE_PLUGIN;
#endif

#if defined(FAILING_INIT)
int
sluice_plugin_init(char *errbuf, size_t errbuf_size)
{
	snprintf(errbuf, errbuf_size, "PROBE_SETTING is not set");
	return -1;
}
#endif

SLUICE_EXPORT sluice_handler_fn probe_echo;
SLUICE_EXPORT sluice_handler_fn probe_commit;
SLUICE_EXPORT sluice_handler_fn probe_reject;

static const char sql_now[] = "select $1::jsonb ->> 'note', txid_current()::text";
static const char sql_commit[] = "  /* the worker's, not ours */ -- really\n commit";

enum sluice_outcome
probe_echo(sluice_job_t *job)
{
	const char *params[1] = { sluice_job_data_text(job) };
	const void *key;
	size_t key_len;
	PGresult *res = sluice_job_exec(job, sql_now, 1, params);
	enum sluice_outcome outcome;

	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
		outcome = sluice_job_sql_error(job, res, "echo");
		PQclear(res);
		return outcome;
	}
	key = sluice_job_key(job, &key_len);
	outcome = sluice_job_succeed(job, json_pack("{s:s, s:s, s:s, s:s?, s:s?, s:s%, s:i, s:s?, s:o}",
	                                            "id", sluice_job_id(job), "source", sluice_job_source(job),
	                                            "type", sluice_job_type(job), "subject", sluice_job_subject(job),
	                                            "time", sluice_job_time(job), "key", key ? key : "",
	                                            key ? key_len : 0, "attempt", sluice_job_attempt(job),
	                                            "note", PQgetisnull(res, 0, 0) ? NULL : PQgetvalue(res, 0, 0),
	                                            "data", json_deep_copy(sluice_job_data(job))));
	PQclear(res);
	return outcome;
}

enum sluice_outcome
probe_commit(sluice_job_t *job)
{
	PGresult *res = sluice_job_exec(job, sql_commit, 0, NULL);
	enum sluice_outcome outcome;

	/* A careless handler: it treats the refusal as any database error. */
	if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
		outcome = sluice_job_sql_error(job, res, "commit");
	else
		outcome = sluice_job_succeed(job, json_object());
	PQclear(res);
	return outcome;
}

enum sluice_outcome
probe_reject(sluice_job_t *job)
{
	const char *code = json_string_value(json_object_get(sluice_job_data(job), "code"));

	return sluice_job_reject(job, code ? code : "no_code", "rejected on request of job \"%s\"",
	                         sluice_job_id(job));
}
