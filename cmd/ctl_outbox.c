/* ctl_outbox.c -- `sluicectl outbox` and `sluicectl schedule list`: the
 * state of enqueue-from-PostgreSQL, read from the database.
 *
 * `outbox` prints the rows waiting to be relayed (and how many of them wait
 * behind the transaction-id watermark), the age of the oldest one (the relay
 * lag), the delayed jobs, each shard's lease (holder, epoch, expiry, rows
 * relayed, time since the last delete), the relays that said they are alive
 * and when, and the oldest running transaction,
 * which is what holds the watermark back. `schedule list` prints the
 * recurring jobs with their next and last slots. Both read only.
 *
 * Not for: changing anything (sluice.enqueue(), sluice.cancel(),
 * sluice.schedule() and friends are SQL functions) or the relay's own view
 * (its /metrics).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "config.h"
#include "ctl.h"
#include "ctl_common.h"
#include "ctl_sources.h"
#include "log.h"
#include "pg.h"

static const char SUMMARY_SQL[] =
	"select (select count(*) from sluice.outbox),"
	" (select count(*) from sluice.outbox where xid >= pg_snapshot_xmin(pg_current_snapshot())),"
	" (select round(extract(epoch from clock_timestamp() - min(due))::numeric, 3) from sluice.outbox),"
	" (select count(*) from sluice.outbox_delayed),"
	" (select round(extract(epoch from min(run_at) - clock_timestamp())::numeric, 3) from sluice.outbox_delayed),"
	" (select shards from sluice.outbox_settings)";

static const char LEASES_SQL[] =
	"select shard, holder, epoch,"
	" case when holder is not null and expires_at > clock_timestamp()"
	"  then round(extract(epoch from expires_at - clock_timestamp())::numeric, 3) end,"
	" relayed, round(extract(epoch from clock_timestamp() - relayed_at)::numeric, 3)"
	" from sluice.outbox_leases order by shard";

static const char RELAYS_SQL[] =
	"select holder, round(extract(epoch from clock_timestamp() - seen_at)::numeric, 3)"
	" from sluice.outbox_relays order by holder";

/* The oldest transaction holding an xid, in any database of the cluster:
 * the watermark is its xid. */
static const char OLDEST_SQL[] =
	"select pid, datname, usename, application_name, backend_xid::text,"
	" round(extract(epoch from clock_timestamp() - xact_start)::numeric, 3), state"
	" from pg_stat_activity where backend_xid is not null"
	" order by age(backend_xid) desc limit 1";

static const char SCHEDULES_SQL[] =
	"select name, cron, tz, type, key,"
	" to_char(next_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
	" to_char(last_slot at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), fires, data::text, last_error"
	" from sluice.schedules order by name";

static void
usage(FILE *out, int schedule)
{
	if (schedule)
		fprintf(out, "usage: sluicectl schedule list [-c FILE | --conninfo STR] [--json]\n"
		             "\n"
		             "Lists the recurring jobs (sluice.schedule()): name, cron, time zone, job type,\n"
		             "key, next slot, last slot fired, the number of slots fired, and why one\n"
		             "could not fire the last time it tried.\n");
	else
		fprintf(out, "usage: sluicectl outbox [-c FILE | --conninfo STR] [--json]\n"
		             "\n"
		             "Shows the outbox: rows waiting (and waiting behind the transaction-id\n"
		             "watermark), the age of the oldest (the relay lag), delayed jobs, each\n"
		             "shard's lease and the oldest running transaction, which holds the watermark.\n");
	fprintf(out, "\n"
	             "  -c, --config FILE  the worker's configuration: its postgres.conninfo\n"
	             "  --conninfo STR     PostgreSQL conninfo or URI (default: the configuration's,\n"
	             "                     else $SLUICE_PG_CONNINFO, else libpq's PG* variables)\n"
	             "  --json             one JSON object\n"
	             "\n"
	             "Exit status: 0, 2 usage or connection error (or the outbox migration missing).\n");
}

enum kind { TEXT, REAL, INT };

/* A column as a JSON value of `kind`; NULL as null. New reference. */
static json_t *
value(const PGresult *res, int row, int col, enum kind kind)
{
	if (PQgetisnull(res, row, col))
		return json_null();
	if (kind == REAL)
		return json_real(strtod(PQgetvalue(res, row, col), NULL));
	if (kind == INT)
		return json_integer(strtoll(PQgetvalue(res, row, col), NULL, 10));
	return json_string(PQgetvalue(res, row, col));
}

/* A JSON member per column of a query's row: its name and kind. */
struct column {
	const char *name;
	enum kind kind;
};

static const struct column summary_cols[] = {
	{ "depth", INT }, { "behind_watermark", INT }, { "lag_seconds", REAL },
	{ "delayed", INT }, { "next_delayed_in_seconds", REAL }, { "shards", INT },
};
static const struct column lease_cols[] = {
	{ "shard", INT },   { "holder", TEXT },  { "epoch", INT },
	{ "expires_in_seconds", REAL }, { "relayed", INT }, { "last_relayed_seconds_ago", REAL },
};
static const struct column relay_cols[] = { { "holder", TEXT }, { "seen_seconds_ago", REAL } };
static const struct column oldest_cols[] = {
	{ "pid", INT },  { "database", TEXT }, { "user", TEXT },     { "application_name", TEXT },
	{ "xid", TEXT }, { "age_seconds", REAL }, { "state", TEXT },
};
/* The first 8 columns of a schedule (then data, last_error). */
static const struct column schedule_cols[] = {
	{ "name", TEXT }, { "cron", TEXT }, { "tz", TEXT },   { "type", TEXT },
	{ "key", TEXT },  { "next", TEXT }, { "last", TEXT }, { "fires", INT },
};

/* Sets o's members from row `row` of res, column i as cols[i]; returns o. */
static json_t *
add_columns(json_t *o, const PGresult *res, int row, const struct column *cols, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		json_object_set_new(o, cols[i].name, value(res, row, (int)i, cols[i].kind));
	return o;
}

/* Runs a query; returns its result (the caller PQclear()s it), or NULL with
 * the server's message in errbuf. */
static PGresult *
run(PGconn *conn, const char *sql, char *errbuf, size_t errbuf_size)
{
	PGresult *res = PQexec(conn, sql);

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(errbuf, errbuf_size, "%s", PQresultErrorMessage(res));
		errbuf[strcspn(errbuf, "\n")] = '\0';
		if (strcmp(sl_pg_sqlstate(res), "42P01") == 0 && strlen(errbuf) + 30 < errbuf_size)
			strcat(errbuf, " (run 'sluicectl migrate')");
		PQclear(res);
		return NULL;
	}
	return res;
}

/* Returns a new array of one object per row of res. */
static json_t *
rows_of(const PGresult *res, const struct column *cols, size_t n)
{
	json_t *a = json_array();
	int i;

	for (i = 0; a != NULL && i < PQntuples(res); i++)
		json_array_append_new(a, add_columns(json_object(), res, i, cols, n));
	return a;
}

json_t *
sl_ctl_outbox_json(PGconn *conn, char *errbuf, size_t errbuf_size)
{
	PGresult *sum = NULL, *leases = NULL, *oldest = NULL, *relays = NULL;
	json_t *o = NULL;

	if ((sum = run(conn, SUMMARY_SQL, errbuf, errbuf_size)) == NULL ||
	    (leases = run(conn, LEASES_SQL, errbuf, errbuf_size)) == NULL ||
	    (oldest = run(conn, OLDEST_SQL, errbuf, errbuf_size)) == NULL ||
	    (relays = run(conn, RELAYS_SQL, errbuf, errbuf_size)) == NULL)
		goto out;
	o = json_object();
	if (o == NULL)
		goto oom;
	add_columns(o, sum, 0, summary_cols, sizeof(summary_cols) / sizeof(summary_cols[0]));
	json_object_set_new(o, "leases", rows_of(leases, lease_cols, sizeof(lease_cols) / sizeof(lease_cols[0])));
	json_object_set_new(o, "relays", rows_of(relays, relay_cols, sizeof(relay_cols) / sizeof(relay_cols[0])));
	json_object_set_new(o, "oldest_transaction",
	                    PQntuples(oldest) > 0 ? add_columns(json_object(), oldest, 0, oldest_cols,
	                                                        sizeof(oldest_cols) / sizeof(oldest_cols[0]))
	                                          : json_null());
	/* A member that could not be set (out of memory) is missing. */
	if (json_object_size(o) != sizeof(summary_cols) / sizeof(summary_cols[0]) + 3)
		goto oom;
	goto out;
oom:
	snprintf(errbuf, errbuf_size, "out of memory");
	json_decref(o);
	o = NULL;
out:
	PQclear(sum);
	PQclear(leases);
	PQclear(oldest);
	PQclear(relays);
	return o;
}

json_t *
sl_ctl_schedules_json(PGconn *conn, char *errbuf, size_t errbuf_size)
{
	PGresult *res = run(conn, SCHEDULES_SQL, errbuf, errbuf_size);
	json_t *a, *o, *data;
	json_error_t jerr;
	int i;

	if (res == NULL)
		return NULL;
	a = json_array();
	for (i = 0; a != NULL && i < PQntuples(res); i++) {
		o = add_columns(json_object(), res, i, schedule_cols, sizeof(schedule_cols) / sizeof(schedule_cols[0]));
		data = json_loads(PQgetvalue(res, i, 8), JSON_DECODE_ANY, &jerr);
		json_object_set_new(o, "data", data ? data : json_null());
		json_object_set_new(o, "last_error", value(res, i, 9, TEXT));
		if (json_array_append_new(a, o) != 0) {
			json_decref(a);
			a = NULL;
		}
	}
	if (a == NULL)
		snprintf(errbuf, errbuf_size, "out of memory");
	PQclear(res);
	return a;
}

/* A member as text for the table: its string, its number, or `dflt` for null. */
static const char *
text_or(json_t *o, const char *name, const char *dflt, char *buf, size_t buf_size)
{
	json_t *v = json_object_get(o, name);

	if (json_is_string(v))
		return json_string_value(v);
	if (json_is_integer(v))
		snprintf(buf, buf_size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else if (json_is_real(v))
		snprintf(buf, buf_size, "%.3f", json_real_value(v));
	else
		return dflt;
	return buf;
}

static int
print_json(json_t *o)
{
	char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));

	if (text == NULL) {
		sl_ctl_error("out of memory");
		return 2;
	}
	printf("%s\n", text);
	free(text);
	return 0;
}

static int
show_outbox(PGconn *conn, int as_json)
{
	char errbuf[1024], b[8][64];
	json_t *o = sl_ctl_outbox_json(conn, errbuf, sizeof(errbuf)), *x, *t;
	size_t i;
	int rc;

	if (o == NULL) {
		sl_ctl_error("%s", errbuf);
		return 2;
	}
	if (as_json) {
		rc = print_json(o);
		json_decref(o);
		return rc;
	}
	printf("outbox: %s rows (%s behind the watermark), oldest %s s; %s delayed (next due in %s s); "
	       "%s shards\n",
	       text_or(o, "depth", "-", b[0], 64), text_or(o, "behind_watermark", "-", b[1], 64),
	       text_or(o, "lag_seconds", "-", b[2], 64), text_or(o, "delayed", "-", b[3], 64),
	       text_or(o, "next_delayed_in_seconds", "-", b[4], 64), text_or(o, "shards", "-", b[5], 64));
	json_array_foreach(json_object_get(o, "leases"), i, x) {
		if (json_is_null(json_object_get(x, "expires_in_seconds")))
			printf("shard %s: free (epoch %s)", text_or(x, "shard", "-", b[0], 64),
			       text_or(x, "epoch", "-", b[1], 64));
		else
			printf("shard %s: held by %s (epoch %s, expires in %s s)", text_or(x, "shard", "-", b[0], 64),
			       text_or(x, "holder", "-", b[1], 64), text_or(x, "epoch", "-", b[2], 64),
			       text_or(x, "expires_in_seconds", "-", b[3], 64));
		printf(", %s rows relayed, last %s s ago\n", text_or(x, "relayed", "-", b[0], 64),
		       text_or(x, "last_relayed_seconds_ago", "-", b[1], 64));
	}
	json_array_foreach(json_object_get(o, "relays"), i, x)
		printf("relay %s: seen %s s ago\n", text_or(x, "holder", "-", b[0], 64),
		       text_or(x, "seen_seconds_ago", "-", b[1], 64));
	t = json_object_get(o, "oldest_transaction");
	if (json_is_object(t))
		printf("watermark: oldest running transaction: xid %s, pid %s, database \"%s\", user \"%s\", "
		       "application \"%s\", %s, open %s s\n",
		       text_or(t, "xid", "", b[0], 64), text_or(t, "pid", "", b[1], 64), text_or(t, "database", "", b[2], 64),
		       text_or(t, "user", "", b[3], 64), text_or(t, "application_name", "", b[4], 64),
		       text_or(t, "state", "?", b[5], 64), text_or(t, "age_seconds", "-", b[6], 64));
	else
		printf("watermark: no transaction holds it back\n");
	json_decref(o);
	return 0;
}

static int
list_schedules(PGconn *conn, int as_json)
{
	char errbuf[1024], b[2][64];
	json_t *a = sl_ctl_schedules_json(conn, errbuf, sizeof(errbuf)), *x;
	size_t i;

	if (a == NULL) {
		sl_ctl_error("%s", errbuf);
		return 2;
	}
	if (!as_json && json_array_size(a) > 0)
		printf("%-20s %-16s %-14s %-20s %-21s %-21s %s\n", "NAME", "CRON", "TZ", "TYPE", "NEXT", "LAST",
		       "FIRES");
	json_array_foreach(a, i, x) {
		if (as_json) {
			if (print_json(x) != 0)
				break;
			continue;
		}
		printf("%-20s %-16s %-14s %-20s %-21s %-21s %s\n", text_or(x, "name", "", b[0], 64),
		       text_or(x, "cron", "", b[0], 64), text_or(x, "tz", "", b[0], 64), text_or(x, "type", "", b[0], 64),
		       text_or(x, "next", "", b[0], 64), text_or(x, "last", "-", b[0], 64),
		       text_or(x, "fires", "", b[1], 64));
		if (json_is_string(json_object_get(x, "last_error")))
			printf("  cannot fire: %s\n", json_string_value(json_object_get(x, "last_error")));
	}
	if (!as_json && json_array_size(a) == 0)
		printf("no schedules\n");
	json_decref(a);
	return 0;
}

/* Both commands: options, connection, then `show`. */
static int
main_common(int argc, char **argv, int schedule)
{
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "conninfo", required_argument, NULL, 'C' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = NULL, *conninfo = NULL;
	struct sl_config *cfg = NULL;
	char errbuf[1024];
	PGconn *conn = NULL;
	int opt, as_json = 0, rc = 2;

	while ((opt = getopt_long(argc, argv, ":c:h", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config = optarg;
			break;
		case 'C':
			conninfo = optarg;
			break;
		case 'j':
			as_json = 1;
			break;
		case 'h':
			usage(stdout, schedule);
			return 0;
		default:
			return sl_ctl_option_error(opt, argc, argv);
		}
	}
	if (optind < argc)
		return sl_ctl_argument_error(argv[optind]);
	if (config != NULL && conninfo != NULL) {
		sl_ctl_error("-c and --conninfo exclude each other");
		return 2;
	}
	if (config != NULL) {
		if ((cfg = sl_ctl_config_load(config)) == NULL)
			return 2;
		conninfo = cfg->pg_conninfo;
	}
	if (conninfo == NULL)
		conninfo = getenv("SLUICE_PG_CONNINFO");
	if ((conn = sl_pg_connect(conninfo ? conninfo : "", "sluicectl", errbuf, sizeof(errbuf))) == NULL) {
		sl_ctl_error("%s", errbuf);
		goto out;
	}
	rc = schedule ? list_schedules(conn, as_json) : show_outbox(conn, as_json);
out:
	PQfinish(conn);
	sl_ctl_config_release(cfg);
	return rc;
}

int
sl_ctl_outbox(int argc, char **argv)
{
	sl_ctl_set_command("outbox");
	return main_common(argc, argv, 0);
}

int
sl_ctl_schedule(int argc, char **argv)
{
	sl_ctl_set_command("schedule");
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout, 1);
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "list") != 0) {
		sl_ctl_error("unknown action \"%s\" (list; schedules are changed with sluice.schedule() and "
		             "sluice.unschedule() in SQL)", argv[1]);
		return 2;
	}
	return main_common(argc - 1, argv + 1, 1);
}
