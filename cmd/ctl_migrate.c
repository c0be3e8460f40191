/* ctl_migrate.c -- `sluicectl migrate`: apply the SQL migrations in order.
 *
 * Migrations are files named NNNN_name.sql. Each one runs in its own
 * transaction together with its row in sluice.schema_migrations, so a file is
 * either applied and recorded or neither. Every transaction first takes one
 * advisory lock, which serialises concurrent `migrate` runs: the second one
 * waits, then finds the version recorded and skips it. A file whose checksum
 * (SHA-256 of its bytes, computed by the server) differs from the recorded one
 * was edited after it was applied: that is an error, never silently ignored.
 *
 * Not for: down migrations, or files that manage their own transactions
 * (BEGIN/COMMIT in a file is detected and refused after the fact).
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libpq-fe.h>

#include "config.h"
#include "ctl.h"
#include "ctl_common.h"
#include "log.h"
#include "pg.h"

/* The installed data folder; the Makefile may pass -DSL_DATADIR=\"$(DATADIR)\". */
#ifndef SL_DATADIR
#define SL_DATADIR "/usr/local/share"
#endif

/* Key of the advisory lock every migration transaction takes: "sluice" in
 * ASCII, so it is recognisable in pg_locks and unlikely to meet another
 * application's key. */
#define MIGRATE_LOCK_KEY "126909663503205"

#define BYTEAOID 17
#define TEXTOID  25

struct migration {
	char *file;       /* "0001_job_ledger.sql" */
	char *version;    /* "0001": the primary key in schema_migrations */
	char *name;       /* "job_ledger" */
	char *sql;        /* the file's bytes, NUL-terminated */
	size_t len;
};

struct migrations {
	struct migration *v;
	size_t n;
};

static const char bootstrap_sql[] =
	"create schema if not exists sluice;"
	"create table if not exists sluice.schema_migrations ("
	"  version    text        primary key,"
	"  name       text        not null,"
	"  checksum   text        not null,"
	"  applied_at timestamptz not null default now())";

/* One row: the file's checksum, and the recorded checksum and time (NULL when
 * the version has not been applied). */
static const char check_sql[] =
	"select encode(sha256($2), 'hex'), m.checksum, m.applied_at "
	"from (values (1)) as one left join sluice.schema_migrations m on m.version = $1";

static const char record_sql[] =
	"insert into sluice.schema_migrations (version, name, checksum) "
	"values ($1, $2, encode(sha256($3), 'hex'))";

static void
usage(FILE *out)
{
	fprintf(out,
	        "usage: sluicectl migrate [--dir DIR] [--conninfo-file FILE | --conninfo STR] [--status]\n"
	        "\n"
	        "Applies the migrations NNNN_name.sql in DIR in version order, each in its own\n"
	        "transaction with its row in sluice.schema_migrations. Applied versions are\n"
	        "skipped; an applied file whose contents changed is an error. Concurrent runs\n"
	        "wait for each other (advisory lock). Files must not contain BEGIN or COMMIT.\n"
	        "\n"
	        "  --dir DIR        migrations folder (default: $SLUICE_SQL_DIR, else ./schemas/sql,\n"
	        "                   else %s/sluice/sql)\n"
	        "  --conninfo-file FILE\n"
	        "                   read the PostgreSQL conninfo or URI from FILE (one line)\n"
	        "  --conninfo STR   PostgreSQL conninfo or URI (default: $SLUICE_PG_CONNINFO, else\n"
	        "                   libpq's PG* environment). Other users see it in ps: pass a\n"
	        "                   password through --conninfo-file, $SLUICE_PG_CONNINFO or\n"
	        "                   ~/.pgpass instead\n"
	        "  --status         apply nothing; list each migration as applied, pending or changed\n"
	        "\n"
	        "Exit status: 0 done (--status: all applied), 1 a migration failed or changed\n"
	        "(--status: something pending or changed), 2 usage, folder or connection error.\n",
	        SL_DATADIR);
}

/* Maximum size of a --conninfo-file. */
#define CONNINFO_FILE_MAX 65536

/* Reads the conninfo in `path` into a new string (the caller frees it):
 * the file's bytes without the trailing newline and spaces. Warns when the
 * file holds a password and others can read it. Returns NULL with the reason
 * in errbuf. */
static char *
read_conninfo_file(const char *path, char *errbuf, size_t errbuf_size)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t n;

	if (f == NULL) {
		snprintf(errbuf, errbuf_size, "could not open conninfo file \"%s\": %s", path, strerror(errno));
		return NULL;
	}
	if ((buf = malloc(CONNINFO_FILE_MAX + 1)) == NULL) {
		snprintf(errbuf, errbuf_size, "out of memory");
		goto out;
	}
	n = fread(buf, 1, CONNINFO_FILE_MAX + 1, f);
	if (ferror(f) || n > CONNINFO_FILE_MAX) {
		snprintf(errbuf, errbuf_size, "could not read conninfo file \"%s\": %s", path,
		         ferror(f) ? strerror(errno) : "larger than 64 KiB");
		free(buf);
		buf = NULL;
		goto out;
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
		n--;
	buf[n] = '\0';
	if (sl_pg_conninfo_has_secret(buf))
		sl_config_warn_exposed(path, "a password in the conninfo");
out:
	fclose(f);
	return buf;
}

/* Returns the migrations folder to use; borrowed (a literal, argv or environ). */
static const char *
resolve_dir(const char *opt)
{
	const char *env = getenv("SLUICE_SQL_DIR");
	struct stat st;

	if (opt != NULL)
		return opt;
	if (env != NULL && *env != '\0')
		return env;
	if (stat("schemas/sql", &st) == 0 && S_ISDIR(st.st_mode))
		return "schemas/sql";
	return SL_DATADIR "/sluice/sql";
}

/* Splits "0001_job_ledger.sql" into version and name. Returns 0, or -1 when
 * the name does not have that shape. Both outputs are new strings on success
 * and NULL otherwise. */
static int
parse_file_name(const char *file, char **version, char **name)
{
	size_t len = strlen(file), digits = strspn(file, "0123456789");

	*version = *name = NULL;
	if (len < 5 || strcmp(file + len - 4, ".sql") != 0)
		return -1;
	/* At least one digit, an underscore, a non-empty name, ".sql". */
	if (digits == 0 || file[digits] != '_' || digits + 1 >= len - 4)
		return -1;
	*version = strndup(file, digits);
	*name = strndup(file + digits + 1, len - 4 - digits - 1);
	if (*version == NULL || *name == NULL) {
		free(*version);
		free(*name);
		*version = *name = NULL;
		return -1;
	}
	return 0;
}

/* Compares versions as numbers of any length: "0010" after "9", "01" equal to "1". */
static int
version_cmp(const char *a, const char *b)
{
	size_t la, lb;

	while (*a == '0' && a[1] != '\0')
		a++;
	while (*b == '0' && b[1] != '\0')
		b++;
	la = strlen(a);
	lb = strlen(b);
	if (la != lb)
		return la < lb ? -1 : 1;
	return strcmp(a, b);
}

static int
migration_cmp(const void *pa, const void *pb)
{
	const struct migration *a = pa, *b = pb;

	return version_cmp(a->version, b->version);
}

static void
migrations_free(struct migrations *ms)
{
	size_t i;

	for (i = 0; i < ms->n; i++) {
		free(ms->v[i].file);
		free(ms->v[i].version);
		free(ms->v[i].name);
		free(ms->v[i].sql);
	}
	free(ms->v);
	ms->v = NULL;
	ms->n = 0;
}

/* Reads dir/file whole into *sql (OUT: a new string, NULL on failure). */
static int
read_file(const char *dir, const char *file, char **sql, size_t *len, char *errbuf, size_t errbuf_size)
{
	char path[1024], *buf = NULL, *grown;
	size_t cap = 0, n = 0, got;
	FILE *f;
	int rc = -1;

	*sql = NULL;
	*len = 0;
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	f = fopen(path, "rb");
	if (f == NULL) {
		snprintf(errbuf, errbuf_size, "could not open file \"%s\": %s", path, strerror(errno));
		return -1;
	}
	do {
		if (cap - n < 8192) {
			cap = cap ? cap * 2 : 16384;
			grown = realloc(buf, cap);
			if (grown == NULL) {
				snprintf(errbuf, errbuf_size, "out of memory reading \"%s\"", path);
				goto out;
			}
			buf = grown;
		}
		got = fread(buf + n, 1, cap - n - 1, f);
		n += got;
	} while (got > 0);
	if (ferror(f)) {
		snprintf(errbuf, errbuf_size, "could not read file \"%s\": %s", path, strerror(errno));
		goto out;
	}
	buf[n] = '\0';
	/* PQexec takes a C string: a NUL would silently cut the file short. */
	if (memchr(buf, '\0', n) != NULL) {
		snprintf(errbuf, errbuf_size, "file \"%s\" contains a NUL byte", path);
		goto out;
	}
	*sql = buf;
	*len = n;
	buf = NULL;
	rc = 0;
out:
	free(buf);
	fclose(f);
	return rc;
}

/* Loads every NNNN_name.sql of dir, sorted by version, into *ms (OUT: empty
 * on failure). Any other *.sql file, or two files with one version, is an
 * error: either is a mistake that would otherwise surface much later. */
static int
load_migrations(const char *dir, struct migrations *ms, char *errbuf, size_t errbuf_size)
{
	DIR *d;
	struct dirent *de;
	struct migration m, *grown;
	size_t cap = 0, i, len;
	int rc = -1;

	ms->v = NULL;
	ms->n = 0;
	d = opendir(dir);
	if (d == NULL) {
		snprintf(errbuf, errbuf_size, "could not open migrations folder \"%s\": %s", dir,
		         strerror(errno));
		return -1;
	}
	while ((errno = 0, de = readdir(d)) != NULL) {
		len = strlen(de->d_name);
		if (len < 4 || strcmp(de->d_name + len - 4, ".sql") != 0)
			continue;
		memset(&m, 0, sizeof(m));
		if (parse_file_name(de->d_name, &m.version, &m.name) != 0) {
			snprintf(errbuf, errbuf_size,
			         "file \"%s/%s\" is not named like a migration (NNNN_name.sql)", dir,
			         de->d_name);
			goto out;
		}
		if (ms->n == cap) {
			cap = cap ? cap * 2 : 16;
			grown = realloc(ms->v, cap * sizeof(*grown));
			if (grown == NULL) {
				free(m.version);
				free(m.name);
				snprintf(errbuf, errbuf_size, "out of memory");
				goto out;
			}
			ms->v = grown;
		}
		/* From here the entry belongs to ms, so migrations_free() releases it. */
		ms->v[ms->n++] = m;
		ms->v[ms->n - 1].file = strdup(de->d_name);
		if (ms->v[ms->n - 1].file == NULL) {
			snprintf(errbuf, errbuf_size, "out of memory");
			goto out;
		}
		if (read_file(dir, de->d_name, &ms->v[ms->n - 1].sql, &ms->v[ms->n - 1].len, errbuf,
		              errbuf_size) != 0)
			goto out;
	}
	if (errno != 0) {
		snprintf(errbuf, errbuf_size, "could not read migrations folder \"%s\": %s", dir,
		         strerror(errno));
		goto out;
	}
	if (ms->n == 0) {
		snprintf(errbuf, errbuf_size, "no migrations (NNNN_name.sql) in \"%s\"", dir);
		goto out;
	}
	qsort(ms->v, ms->n, sizeof(ms->v[0]), migration_cmp);
	for (i = 1; i < ms->n; i++) {
		if (version_cmp(ms->v[i - 1].version, ms->v[i].version) == 0) {
			snprintf(errbuf, errbuf_size, "files \"%s\" and \"%s\" have the same version",
			         ms->v[i - 1].file, ms->v[i].file);
			goto out;
		}
	}
	rc = 0;
out:
	closedir(d);
	if (rc != 0)
		migrations_free(ms);
	return rc;
}

/* Returns the 1-based line of sql that holds the 1-based character position
 * `pos` the server reported (it counts characters, not bytes). */
static int
line_of_position(const char *sql, long pos)
{
	const unsigned char *p = (const unsigned char *)sql;
	long chars = 0;
	int line = 1;

	for (; *p && chars < pos - 1; p++) {
		if ((*p & 0xc0) != 0x80)
			chars++;
		if (*p == '\n')
			line++;
	}
	return line;
}

/* Writes the server's one-line message for a failed command into errbuf:
 * the primary message, and the line in `sql` (when not NULL) that the error
 * points at. res may be NULL (libpq failed before a result). */
static void
format_error(PGconn *conn, const PGresult *res, const char *sql, char *errbuf, size_t errbuf_size)
{
	const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *position = res ? PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION) : NULL;
	size_t n;

	if (primary == NULL) {
		snprintf(errbuf, errbuf_size, "%s", PQerrorMessage(conn));
		n = strlen(errbuf);
		while (n > 0 && (errbuf[n - 1] == '\n' || errbuf[n - 1] == ' '))
			errbuf[--n] = '\0';
		if (n == 0)
			snprintf(errbuf, errbuf_size, "unknown error");
		return;
	}
	if (sql != NULL && position != NULL)
		snprintf(errbuf, errbuf_size, "%s (line %d)", primary, line_of_position(sql, atol(position)));
	else
		snprintf(errbuf, errbuf_size, "%s", primary);
}

/* Runs one command without parameters; 0 if it succeeded, else -1 with the
 * server's message in errbuf. `sql_for_lines` is the text positions refer to. */
static int
run(PGconn *conn, const char *sql, const char *sql_for_lines, char *errbuf, size_t errbuf_size)
{
	PGresult *res = PQexec(conn, sql);
	ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	int rc = 0;

	/* A file of comments only is an empty query: nothing to do, not an error. */
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
		format_error(conn, res, sql_for_lines, errbuf, errbuf_size);
		rc = -1;
	}
	PQclear(res);
	return rc;
}

/* Ends a failed transaction. Its own failure changes nothing: the caller
 * reports the first error and the connection is closed next. */
static void
rollback(PGconn *conn)
{
	PQclear(PQexec(conn, "rollback"));
}

/* Opens a transaction that holds the migrations lock until it ends. */
static int
begin_locked(PGconn *conn, char *errbuf, size_t errbuf_size)
{
	if (run(conn, "begin", NULL, errbuf, errbuf_size) != 0)
		return -1;
	if (run(conn, "select pg_advisory_xact_lock(" MIGRATE_LOCK_KEY ")", NULL, errbuf, errbuf_size) != 0) {
		rollback(conn);
		return -1;
	}
	return 0;
}

/* Creates schema_migrations if needed. Under the lock, because two sessions
 * running "create table if not exists" at once can both decide to create it,
 * and one then fails on a unique index of the catalog. */
static int
bootstrap(PGconn *conn, char *errbuf, size_t errbuf_size)
{
	if (begin_locked(conn, errbuf, errbuf_size) != 0)
		return -1;
	if (run(conn, bootstrap_sql, NULL, errbuf, errbuf_size) != 0 ||
	    run(conn, "commit", NULL, errbuf, errbuf_size) != 0) {
		rollback(conn);
		return -1;
	}
	return 0;
}

/* Reads what schema_migrations says about m. On success returns 0 and sets
 * *res (OUT: a result the caller PQclear()s; NULL on failure) to one row:
 * the file's checksum, the recorded checksum, applied_at (both NULL when m is
 * pending). */
static int
check_migration(PGconn *conn, const struct migration *m, PGresult **res, char *errbuf,
                size_t errbuf_size)
{
	const Oid types[2] = { TEXTOID, BYTEAOID };
	const char *values[2] = { m->version, m->sql };
	const int lengths[2] = { 0, (int)m->len };
	const int formats[2] = { 0, 1 };

	/* The file goes as binary bytea so the checksum covers its exact bytes. */
	*res = PQexecParams(conn, check_sql, 2, types, values, lengths, formats, 0);
	if (*res == NULL || PQresultStatus(*res) != PGRES_TUPLES_OK || PQntuples(*res) != 1) {
		format_error(conn, *res, NULL, errbuf, errbuf_size);
		PQclear(*res);
		*res = NULL;
		return -1;
	}
	return 0;
}

/* Applies m unless it is already applied. Returns 1 when applied, 0 when
 * skipped, -1 on error (the transaction rolled back, the message in errbuf). */
static int
apply_migration(PGconn *conn, const struct migration *m, char *errbuf, size_t errbuf_size)
{
	const Oid types[3] = { TEXTOID, TEXTOID, BYTEAOID };
	const char *values[3] = { m->version, m->name, m->sql };
	const int lengths[3] = { 0, 0, (int)m->len };
	const int formats[3] = { 0, 0, 1 };
	PGresult *res = NULL;
	char msg[1024];
	int rc = -1;

	if (begin_locked(conn, msg, sizeof(msg)) != 0)
		goto fail;
	if (check_migration(conn, m, &res, msg, sizeof(msg)) != 0)
		goto fail;
	if (!PQgetisnull(res, 0, 1)) {
		if (strcmp(PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1)) != 0) {
			snprintf(errbuf, errbuf_size,
			         "migration \"%s\" was changed after it was applied at %s "
			         "(checksum %.12s..., recorded %.12s...)",
			         m->file, PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
			rollback(conn);
			goto out;
		}
		rollback(conn);
		rc = 0;
		goto out;
	}
	PQclear(res);
	res = NULL;
	if (run(conn, m->sql, m->sql, msg, sizeof(msg)) != 0)
		goto fail;
	/* A COMMIT in the file has already made part of it permanent and released
	 * the lock; the best left to do is to say so and not record the version. */
	if (PQtransactionStatus(conn) != PQTRANS_INTRANS) {
		snprintf(msg, sizeof(msg), "the file ended the transaction itself (COMMIT or ROLLBACK); "
		                           "check what it applied");
		goto fail;
	}
	res = PQexecParams(conn, record_sql, 3, types, values, lengths, formats, 0);
	if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
		format_error(conn, res, NULL, msg, sizeof(msg));
		goto fail;
	}
	if (run(conn, "commit", NULL, msg, sizeof(msg)) != 0)
		goto fail;
	rc = 1;
	goto out;
fail:
	snprintf(errbuf, errbuf_size, "could not apply \"%s\": %s", m->file, msg);
	if (PQtransactionStatus(conn) != PQTRANS_IDLE)
		rollback(conn);
out:
	PQclear(res);
	return rc;
}

/* Prints applied / pending / changed for every file, without writing
 * anything. Returns 0 when all are applied and unchanged, 1 when something is
 * pending or changed, -1 on error. */
static int
show_status(PGconn *conn, const struct migrations *ms, char *errbuf, size_t errbuf_size)
{
	PGresult *res = NULL;
	size_t i;
	int exists, rc = -1, pending = 0, changed = 0;

	res = PQexec(conn, "select to_regclass('sluice.schema_migrations') is not null");
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		format_error(conn, res, NULL, errbuf, errbuf_size);
		goto out;
	}
	exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	res = NULL;
	for (i = 0; i < ms->n; i++) {
		if (!exists) {
			printf("pending  %s\n", ms->v[i].file);
			pending++;
			continue;
		}
		if (check_migration(conn, &ms->v[i], &res, errbuf, errbuf_size) != 0)
			goto out;
		if (PQgetisnull(res, 0, 1)) {
			printf("pending  %s\n", ms->v[i].file);
			pending++;
		} else if (strcmp(PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1)) != 0) {
			printf("changed  %s (applied %s; the file differs from what was applied)\n",
			       ms->v[i].file, PQgetvalue(res, 0, 2));
			changed++;
		} else {
			printf("applied  %s (%s)\n", ms->v[i].file, PQgetvalue(res, 0, 2));
		}
		PQclear(res);
		res = NULL;
	}
	printf("%zu migrations: %zu applied, %d pending, %d changed\n", ms->n,
	       ms->n - (size_t)pending - (size_t)changed, pending, changed);
	rc = pending || changed ? 1 : 0;
out:
	PQclear(res);
	return rc;
}

int
sl_ctl_migrate(int argc, char **argv)
{
	static const struct option options[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "conninfo", required_argument, NULL, 'c' },
		{ "conninfo-file", required_argument, NULL, 'f' },
		{ "status", no_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir_opt = NULL, *conninfo = NULL, *conninfo_path = NULL, *dir;
	char *conninfo_owned = NULL;
	struct migrations ms = { NULL, 0 };
	PGconn *conn = NULL;
	char errbuf[2048], redacted[1024];
	int opt, status = 0, rc = 2, r;
	size_t i, j, applied = 0, skipped = 0;

	sl_ctl_set_command("migrate");
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
		switch (opt) {
		case 'd':
			dir_opt = optarg;
			break;
		case 'c':
			conninfo = optarg;
			break;
		case 'f':
			conninfo_path = optarg;
			break;
		case 's':
			status = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return sl_ctl_option_error(opt, argc, argv);
		}
	}
	if (optind != argc)
		return sl_ctl_argument_error(argv[optind]);
	if (conninfo != NULL && conninfo_path != NULL) {
		sl_ctl_error("--conninfo and --conninfo-file exclude each other");
		return 2;
	}
	if (conninfo != NULL && sl_pg_conninfo_has_secret(conninfo))
		sl_log_warn("a password in --conninfo is visible to other users (ps); use --conninfo-file, "
		            "SLUICE_PG_CONNINFO or ~/.pgpass");
	if (conninfo_path != NULL) {
		if ((conninfo_owned = read_conninfo_file(conninfo_path, errbuf, sizeof(errbuf))) == NULL) {
			sl_ctl_error("%s", errbuf);
			return 2;
		}
		conninfo = conninfo_owned;
	}
	if (conninfo == NULL)
		conninfo = getenv("SLUICE_PG_CONNINFO");
	if (conninfo == NULL)
		conninfo = "";
	dir = resolve_dir(dir_opt);

	if (load_migrations(dir, &ms, errbuf, sizeof(errbuf)) != 0) {
		sl_ctl_error("%s", errbuf);
		goto out;
	}
	conn = sl_pg_connect(conninfo, "sluicectl migrate", errbuf, sizeof(errbuf));
	if (conn == NULL) {
		/* libpq's message may span lines; an error is one line here. */
		for (i = 0, j = 0; errbuf[i] != '\0'; i++) {
			if (errbuf[i] == '\n' || errbuf[i] == '\t')
				errbuf[i] = ' ';
			if (errbuf[i] != ' ' || j == 0 || errbuf[j - 1] != ' ')
				errbuf[j++] = errbuf[i];
		}
		errbuf[j] = '\0';
		/* The conninfo is shown only redacted: it may carry a password.
		 * One libpq cannot parse is not shown at all; errbuf says why. */
		if (sl_pg_conninfo_redact(conninfo, redacted, sizeof(redacted)) == 0 && *redacted)
			sl_ctl_error("could not connect to \"%s\": %s", redacted, errbuf);
		else
			sl_ctl_error("could not connect to PostgreSQL: %s", errbuf);
		goto out;
	}

	/* "already exists, skipping" from every idempotent statement is noise;
	 * warnings and errors still come through. */
	if (sl_pg_exec(conn, "set client_min_messages = warning", errbuf, sizeof(errbuf)) != 0) {
		sl_ctl_error("could not set client_min_messages: %s", errbuf);
		goto out;
	}

	if (status) {
		r = show_status(conn, &ms, errbuf, sizeof(errbuf));
		if (r < 0)
			sl_ctl_error("could not read the migration status: %s", errbuf);
		rc = r < 0 ? 2 : r;
		goto out;
	}

	if (bootstrap(conn, errbuf, sizeof(errbuf)) != 0) {
		sl_ctl_error("could not create sluice.schema_migrations: %s", errbuf);
		goto out;
	}
	for (i = 0; i < ms.n; i++) {
		r = apply_migration(conn, &ms.v[i], errbuf, sizeof(errbuf));
		if (r < 0) {
			sl_ctl_error("%s", errbuf);
			printf("%zu applied, %zu already applied, stopped at %s\n", applied, skipped,
			       ms.v[i].file);
			rc = 1;
			goto out;
		}
		if (r == 1) {
			printf("applied %s\n", ms.v[i].file);
			/* Each line is a fact already committed; show it at once. */
			fflush(stdout);
			applied++;
		} else {
			skipped++;
		}
	}
	printf("%zu applied, %zu already applied (database \"%s\" on %s:%s)\n", applied, skipped,
	       PQdb(conn), PQhost(conn), PQport(conn));
	rc = 0;
out:
	PQfinish(conn);
	migrations_free(&ms);
	free(conninfo_owned);
	return rc;
}
