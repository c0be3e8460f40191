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

static const char *
text_or(const PGresult *res, int row, int col, const char *dflt)
{
	return PQgetisnull(res, row, col) ? dflt : PQgetvalue(res, row, col);
}

static PGresult *
run(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		char msg[512];

		snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
		msg[strcspn(msg, "\n")] = '\0';
		if (strcmp(sl_pg_sqlstate(res), "42P01") == 0)
			sl_ctl_error("%s (run 'sluicectl migrate')", msg);
		else
			sl_ctl_error("%s", msg);
		PQclear(res);
		return NULL;
	}
	return res;
}

static int
show_outbox(PGconn *conn, int as_json)
{
	PGresult *sum = NULL, *leases = NULL, *oldest = NULL, *relays = NULL;
	int rc = 2, i;

	if ((sum = run(conn, SUMMARY_SQL)) == NULL || (leases = run(conn, LEASES_SQL)) == NULL ||
	    (oldest = run(conn, OLDEST_SQL)) == NULL || (relays = run(conn, RELAYS_SQL)) == NULL)
		goto out;
	if (as_json) {
		json_t *o = json_object(), *ls = json_array(), *x = json_null();
		char *text;

		add_columns(o, sum, 0, summary_cols, sizeof(summary_cols) / sizeof(summary_cols[0]));
		for (i = 0; i < PQntuples(leases); i++)
			json_array_append_new(ls, add_columns(json_object(), leases, i, lease_cols,
			                                      sizeof(lease_cols) / sizeof(lease_cols[0])));
		json_object_set_new(o, "leases", ls);
		ls = json_array();
		for (i = 0; i < PQntuples(relays); i++)
			json_array_append_new(ls, add_columns(json_object(), relays, i, relay_cols,
			                                      sizeof(relay_cols) / sizeof(relay_cols[0])));
		json_object_set_new(o, "relays", ls);
		if (PQntuples(oldest) > 0) {
			json_decref(x);
			x = add_columns(json_object(), oldest, 0, oldest_cols, sizeof(oldest_cols) / sizeof(oldest_cols[0]));
		}
		json_object_set_new(o, "oldest_transaction", x);
		text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
		printf("%s\n", text);
		free(text);
		json_decref(o);
	} else {
		printf("outbox: %s rows (%s behind the watermark), oldest %s s; %s delayed (next due in %s s); "
		       "%s shards\n",
		       PQgetvalue(sum, 0, 0), PQgetvalue(sum, 0, 1), text_or(sum, 0, 2, "-"), PQgetvalue(sum, 0, 3),
		       text_or(sum, 0, 4, "-"), PQgetvalue(sum, 0, 5));
		for (i = 0; i < PQntuples(leases); i++) {
			if (PQgetisnull(leases, i, 3))
				printf("shard %s: free (epoch %s)", PQgetvalue(leases, i, 0), PQgetvalue(leases, i, 2));
			else
				printf("shard %s: held by %s (epoch %s, expires in %s s)", PQgetvalue(leases, i, 0),
				       PQgetvalue(leases, i, 1), PQgetvalue(leases, i, 2), PQgetvalue(leases, i, 3));
			printf(", %s rows relayed, last %s s ago\n", PQgetvalue(leases, i, 4), text_or(leases, i, 5, "-"));
		}
		for (i = 0; i < PQntuples(relays); i++)
			printf("relay %s: seen %s s ago\n", PQgetvalue(relays, i, 0), PQgetvalue(relays, i, 1));
		if (PQntuples(oldest) > 0)
			printf("watermark: oldest running transaction: xid %s, pid %s, database \"%s\", user \"%s\", "
			       "application \"%s\", %s, open %s s\n",
			       PQgetvalue(oldest, 0, 4), PQgetvalue(oldest, 0, 0), text_or(oldest, 0, 1, ""),
			       text_or(oldest, 0, 2, ""), text_or(oldest, 0, 3, ""), text_or(oldest, 0, 6, "?"),
			       text_or(oldest, 0, 5, "-"));
		else
			printf("watermark: no transaction holds it back\n");
	}
	rc = 0;
out:
	PQclear(sum);
	PQclear(leases);
	PQclear(oldest);
	PQclear(relays);
	return rc;
}

static int
list_schedules(PGconn *conn, int as_json)
{
	PGresult *res = run(conn, SCHEDULES_SQL);
	int i;

	if (res == NULL)
		return 2;
	if (!as_json && PQntuples(res) > 0)
		printf("%-20s %-16s %-14s %-20s %-21s %-21s %s\n", "NAME", "CRON", "TZ", "TYPE", "NEXT", "LAST",
		       "FIRES");
	for (i = 0; i < PQntuples(res); i++) {
		if (as_json) {
			json_t *o = json_object(), *data;
			json_error_t jerr;
			char *text;

			add_columns(o, res, i, schedule_cols, sizeof(schedule_cols) / sizeof(schedule_cols[0]));
			data = json_loads(PQgetvalue(res, i, 8), JSON_DECODE_ANY, &jerr);
			json_object_set_new(o, "data", data ? data : json_null());
			json_object_set_new(o, "last_error", value(res, i, 9, TEXT));
			text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
			printf("%s\n", text);
			free(text);
			json_decref(o);
		} else {
			printf("%-20s %-16s %-14s %-20s %-21s %-21s %s\n", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
			       PQgetvalue(res, i, 2), PQgetvalue(res, i, 3), PQgetvalue(res, i, 5),
			       text_or(res, i, 6, "-"), PQgetvalue(res, i, 7));
			if (!PQgetisnull(res, i, 9))
				printf("  cannot fire: %s\n", PQgetvalue(res, i, 9));
		}
	}
	if (!as_json && PQntuples(res) == 0)
		printf("no schedules\n");
	PQclear(res);
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
