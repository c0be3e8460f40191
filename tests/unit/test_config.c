/* test_config.c -- unit tests for config.c: defaults, overrides and the
 * `file:line: what is wrong` errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "config.h"

static char path[64];

/* Writes text to a fresh temporary file and returns its path. */
static const char *
write_conf(const char *text)
{
	FILE *f;
	int fd;

	snprintf(path, sizeof(path), "/tmp/sluice-test-conf.XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	fputs(text, f);
	fclose(f);
	return path;
}

/* Loads text and expects failure with `want` in the message (after file:). */
static void
expect_error(const char *text, const char *want)
{
	char err[512];
	struct sl_config *cfg = sl_config_load(write_conf(text), err, sizeof(err));

	unlink(path);
	if (cfg != NULL)
		fail_msg("expected an error containing \"%s\"", want);
	if (strstr(err, want) == NULL || strncmp(err, path, strlen(path)) != 0)
		fail_msg("error \"%s\" does not contain \"%s\"", err, want);
}

static const char *minimal = "jobs = ( { type = \"ledger.open\"; } );\n";

static void
test_defaults(void **state)
{
	char err[512];
	struct sl_config *cfg;

	(void)state;
	unsetenv("SLUICE_KAFKA_BROKERS");
	unsetenv("SLUICE_PG_CONNINFO");
	cfg = sl_config_load(write_conf(minimal), err, sizeof(err));
	unlink(path);
	assert_non_null(cfg);
	assert_string_equal(cfg->brokers, "127.0.0.1:9092");
	assert_string_equal(cfg->topics[0], "jobs");
	assert_int_equal(cfg->n_topics, 1);
	assert_string_equal(cfg->dlq_topic, "jobs.dlq");
	assert_int_equal(cfg->executors, 4);
	assert_int_equal(cfg->jobs[0].retry.max_attempts, 8);
	assert_string_equal(cfg->jobs[0].handler, "ledger.open");
	assert_string_equal(cfg->jobs[0].result_topic, "job-results");
	assert_null(cfg->jobs[0].schema_path);
	assert_string_equal(cfg->pg_conninfo, "");
	assert_int_equal(cfg->pg_pooled, 0);
	sl_config_destroy(cfg);
}

/* Lock waits and idle transactions are bounded by half the consumer's
 * session timeout unless set: a frozen worker's locks go before its
 * partitions move to another member. */
static void
test_session_bounds_follow_the_session_timeout(void **state)
{
	char err[512];
	struct sl_config *cfg;

	(void)state;
	cfg = sl_config_load(write_conf(minimal), err, sizeof(err));
	unlink(path);
	assert_non_null(cfg);
	assert_true(cfg->lock_timeout == 5.0 && cfg->idle_in_transaction_timeout == 5.0);
	assert_int_equal(cfg->max_result_bytes, 1000000);
	sl_config_destroy(cfg);

	cfg = sl_config_load(write_conf("kafka: { properties = [ \"session.timeout.ms=30000\" ];\n"
	                                "  consumer_properties = [ \"session.timeout.ms=7000\" ]; };\n"
	                                "limits: { idle_in_transaction_timeout = 2.5; };\n"
	                                "jobs = ( { type = \"t\"; } );\n"),
	                     err, sizeof(err));
	unlink(path);
	if (cfg == NULL)
		fail_msg("%s", err);
	assert_true(cfg->lock_timeout == 3.5);
	assert_true(cfg->idle_in_transaction_timeout == 2.5);
	sl_config_destroy(cfg);

	expect_error("limits: { lock_timeout = 0; };\n" "jobs = ( { type = \"t\"; } );\n",
	             "\"limits.lock_timeout\" must be between");
	expect_error("limits: { max_result_bytes = 100; };\n" "jobs = ( { type = \"t\"; } );\n",
	             "\"limits.max_result_bytes\" must be between 1024 and 16000000, not 100");
}

static void
test_sample_file_loads(void **state)
{
	char err[512];
	struct sl_config *cfg;

	(void)state;
	cfg = sl_config_load("worker.conf", err, sizeof(err));
	if (cfg == NULL)
		fail_msg("worker.conf: %s", err);
	assert_int_equal(cfg->n_jobs, 2);
	assert_string_equal(sl_config_job_type(cfg, "ledger.transfer")->handler, "ledger.transfer");
	assert_null(sl_config_job_type(cfg, "nope"));
	sl_config_destroy(cfg);
}

static void
test_env_overrides(void **state)
{
	char err[512];
	struct sl_config *cfg;

	(void)state;
	setenv("SLUICE_KAFKA_BROKERS", "k1:9", 1);
	setenv("SLUICE_PG_CONNINFO", "dbname=x password=y", 1);
	cfg = sl_config_load(write_conf("kafka: { brokers = \"file:1\"; };\npostgres: { conninfo = \"a\"; };\n"
	                                "jobs = ( { type = \"t\"; } );\n"),
	                     err, sizeof(err));
	unlink(path);
	unsetenv("SLUICE_KAFKA_BROKERS");
	unsetenv("SLUICE_PG_CONNINFO");
	assert_non_null(cfg);
	assert_string_equal(cfg->brokers, "k1:9");
	assert_string_equal(cfg->pg_conninfo, "dbname=x password=y");
	sl_config_destroy(cfg);
}

static void
test_pooling(void **state)
{
	char err[512];
	struct sl_config *cfg;

	(void)state;
	cfg = sl_config_load(write_conf("postgres: { pooling = \"transaction\"; };\njobs = ( { type = \"t\"; } );\n"),
	                     err, sizeof(err));
	unlink(path);
	assert_non_null(cfg);
	assert_int_equal(cfg->pg_pooled, 1);
	sl_config_destroy(cfg);
	expect_error("jobs = ( { type = \"a\"; } );\npostgres: {\n  pooling = \"session\"; };\n",
	             ":3: unknown postgres.pooling \"session\" (none, transaction)");
	expect_error("jobs = ( { type = \"a\"; } );\npostgres: { pooling = true; };\n",
	             ":2: \"postgres.pooling\" must be a string");

	/* SLUICE_PG_POOLING overrides the file either way; a bad value is an error. */
	setenv("SLUICE_PG_POOLING", "none", 1);
	cfg = sl_config_load(write_conf("postgres: { pooling = \"transaction\"; };\njobs = ( { type = \"t\"; } );\n"),
	                     err, sizeof(err));
	assert_non_null(cfg);
	assert_int_equal(cfg->pg_pooled, 0);
	sl_config_destroy(cfg);
	setenv("SLUICE_PG_POOLING", "transaction", 1);
	cfg = sl_config_load(path, err, sizeof(err));
	assert_non_null(cfg);
	assert_int_equal(cfg->pg_pooled, 1);
	sl_config_destroy(cfg);
	setenv("SLUICE_PG_POOLING", "session", 1);
	assert_null(sl_config_load(path, err, sizeof(err)));
	assert_non_null(strstr(err, "SLUICE_PG_POOLING: unknown value \"session\" (none, transaction)"));
	unsetenv("SLUICE_PG_POOLING");
	unlink(path);
}

static void
test_isolation_read_committed_accepted(void **state)
{
	char err[512];
	struct sl_config *cfg;

	(void)state;
	cfg = sl_config_load(write_conf("kafka: { consumer_properties = [ \"isolation.level=read_committed\" ]; };\n"
	                                "jobs = ( { type = \"t\"; } );\n"),
	                     err, sizeof(err));
	unlink(path);
	if (cfg == NULL)
		fail_msg("%s", err);
	sl_config_destroy(cfg);
}

static void
test_job_retry_inherits_and_overrides(void **state)
{
	char err[512];
	struct sl_config *cfg;

	(void)state;
	cfg = sl_config_load(write_conf("retry: { max_attempts = 3; };\n"
	                                "jobs = ( { type = \"a\"; }, { type = \"b\"; retry: { max_attempts = 5; }; } );\n"),
	                     err, sizeof(err));
	unlink(path);
	assert_non_null(cfg);
	assert_int_equal(cfg->jobs[0].retry.max_attempts, 3);
	assert_int_equal(cfg->jobs[1].retry.max_attempts, 5);
	sl_config_destroy(cfg);
}

static void
test_errors(void **state)
{
	char err[512];

	(void)state;
	expect_error("jobs = ( { type = \"a\"; } );\nexecutor = 4;\n", ":2: unknown setting \"executor\"");
	expect_error("jobs = ( { type = \"a\"; } );\nkafka: { brokerz = \"x\"; };\n",
	             ":2: unknown setting \"kafka.brokerz\"");
	expect_error("jobs = ( { type = \"a\"; } );\nexecutors = \"four\";\n", ":2: \"executors\" must be an integer");
	expect_error("jobs = ( { type = \"a\"; } );\nexecutors = 0;\n", ":2: \"executors\" must be between 1 and 256");
	expect_error("jobs = ( { type = \"a\"; } );\nexecutors = = 1;\n", ":2: syntax error");
	expect_error("executors = 1;\n", "no job types");
	expect_error("jobs = ( { type = \"a\"; }, { type = \"a\"; } );\n", "defined twice");
	expect_error("jobs = ( { type = \"a\"; } );\nkafka: { properties = [ \"enable.auto.offset.store=true\" ]; };\n",
	             ":2: kafka property \"enable.auto.offset.store\" is set by sluice");
	expect_error("jobs = ( { type = \"a\"; } );\nkafka: { properties = [ \"isolation.level=read_uncommitted\" ]; };\n",
	             ":2: kafka property \"isolation.level\": only read_committed is supported");
	expect_error("jobs = ( { type = \"a\"; } );\n\nkafka: {\n  consumer_properties = [ \"fetch.wait.max.ms=50\",\n"
	             "    \"isolation.level=read_uncommitted\" ]; };\n",
	             ":5: kafka property \"isolation.level\": only read_committed is supported");
	expect_error("jobs = ( { type = \"a\"; } );\nkafka: { properties = [ \"no.such.prop=1\" ]; };\n",
	             ":2: kafka property \"no.such.prop\"");
	expect_error("jobs = ( { type = \"a\"; } );\nkafka: { properties = [ \"sasl.password\" ]; };\n",
	             "must hold \"name=value\" strings");
	expect_error("jobs = ( { type = \"a\"; } );\nlog: { level = \"loud\"; };\n", ":2: unknown log level \"loud\"");
	expect_error("jobs = ( { type = \"a\"; } );\n"
	             "kafka: { consumer_properties = [ \"partition.assignment.strategy=cooperative-sticky\" ]; };\n",
	             ":2: kafka property \"partition.assignment.strategy\": only the eager assignors");
	expect_error("jobs = ( { type = \"a\"; } );\nretry: { initial_backoff = 5.0; max_backoff = 1.0; };\n",
	             "must not be below");
	expect_error("jobs = ( { type = \"a\";\n  retry: { max_attempts = 0; }; } );\n",
	             ":2: \"jobs[0].retry.max_attempts\" must be between 1 and 1000");
	expect_error("jobs = ( { type = \"a\"; } );\nkafka: { topics = [ ]; };\n", "is empty");
	/* libconfig 1.5 stores these wrapped to 32 bits (4294967300 as 4). */
	expect_error("jobs = ( { type = \"a\"; } );\nexecutors = 4294967300;\n",
	             ":2: integer 4294967300 is out of range");
	expect_error("jobs = ( { type = \"a\"; } );\nlimits: {\n max_batch = 2147483648; };\n",
	             ":3: integer 2147483648 is out of range");
	expect_error("jobs = ( { type = \"a\"; } );\nexecutors = -4294967300;\n", ":2: integer -4294967300 is out of range");
	expect_error("jobs = ( { type = \"a\"; } );\nexecutors = 0x100000004;\n", ":2: integer 0x100000004 is out of range");
	expect_error("jobs = ( { type = \"a\"; } );\nexecutors = 99999999999999999999L;\n",
	             ":2: integer 99999999999999999999L is out of range");
	expect_error("jobs = ( { type = \"a\"; } );\nexecutors = 4294967300L;\n",
	             ":2: \"executors\" must be between 1 and 256, not 4294967300");
	expect_error("jobs = ( { type = \"a\"; } );\nlimits: { shutdown_timeout = 4294967300; };\n",
	             ":2: integer 4294967300 is out of range");
	expect_error("jobs = ( { type = \"a\"; } );\n@include \"/nonexistent/x.conf\"\n",
	             ":2: could not read included file \"/nonexistent/x.conf\"");
	assert_null(sl_config_load("/nonexistent/worker.conf", err, sizeof(err)));
	assert_non_null(strstr(err, "could not read configuration file \"/nonexistent/worker.conf\""));
}

/* The outbox section: defaults, values, and bad values with file:line. */
static void
test_outbox_section(void **state)
{
	char err[512];
	struct sl_config *cfg;

	(void)state;
	cfg = sl_config_load(write_conf(minimal), err, sizeof(err));
	unlink(path);
	assert_non_null(cfg);
	assert_int_equal(cfg->outbox.enabled, 1);
	assert_string_equal(cfg->outbox.source, "sluice.outbox");
	assert_true(cfg->outbox.poll_interval == 0.1);
	assert_int_equal(cfg->outbox.batch, 1000);
	assert_true(cfg->outbox.lease_ttl == 10.0);
	sl_config_destroy(cfg);

	cfg = sl_config_load(write_conf("jobs = ( { type = \"a\"; } );\n"
	                                "outbox: { enabled = false; source = \"billing\"; poll_interval = 0.5;\n"
	                                "  batch = 10; lease_ttl = 30; };\n"),
	                     err, sizeof(err));
	unlink(path);
	assert_non_null(cfg);
	assert_int_equal(cfg->outbox.enabled, 0);
	assert_string_equal(cfg->outbox.source, "billing");
	assert_true(cfg->outbox.poll_interval == 0.5);
	assert_int_equal(cfg->outbox.batch, 10);
	assert_true(cfg->outbox.lease_ttl == 30.0);
	sl_config_destroy(cfg);

	expect_error("jobs = ( { type = \"a\"; } );\noutbox: { enabled = 1; };\n",
	             ":2: \"outbox.enabled\" must be true or false");
	expect_error("jobs = ( { type = \"a\"; } );\noutbox: {\n  poll_interval = 0; };\n",
	             ":3: \"outbox.poll_interval\" must be between 0.01 and 60, not 0");
	expect_error("jobs = ( { type = \"a\"; } );\noutbox: { batch = 0; };\n",
	             ":2: \"outbox.batch\" must be between 1 and 100000");
	expect_error("jobs = ( { type = \"a\"; } );\noutbox: { lease_ttl = 0.5; };\n",
	             ":2: \"outbox.lease_ttl\" must be between 1 and 3600");
	expect_error("jobs = ( { type = \"a\"; } );\noutbox: { source = \"\"; };\n",
	             ":2: \"outbox.source\" must not be empty");
	expect_error("jobs = ( { type = \"a\"; } );\noutbox: { topic = \"x\"; };\n",
	             ":2: unknown setting \"outbox.topic\"");
	expect_error("jobs = ( { type = \"a\"; } );\noutbox = 1;\n", ":2: \"outbox\" must be a group");
}

/* Large numbers where libconfig takes no integer: strings, comments, floats. */
static void
test_large_numbers_elsewhere(void **state)
{
	char err[512];
	struct sl_config *cfg;

	(void)state;
	cfg = sl_config_load(write_conf("# executors = 4294967300\n/* 4294967300\n 99999999999 */\n"
	                                "results: { source = \"4294967300 // 5\"; }; // 4294967300\n"
	                                "limits: { shutdown_timeout = 3.0e2; revoke_timeout = .5; };\n"
	                                "jobs = ( { type = \"a-4294967300\"; } );\n"),
	                     err, sizeof(err));
	unlink(path);
	if (cfg == NULL)
		fail_msg("%s", err);
	assert_string_equal(cfg->result_source, "4294967300 // 5");
	assert_true(cfg->shutdown_timeout == 300.0);
	sl_config_destroy(cfg);
}

/* Writes text to dir/name. */
static void
write_at(const char *dir, const char *name, const char *text)
{
	char p[256];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	assert_non_null(f = fopen(p, "w"));
	fputs(text, f);
	fclose(f);
}

/* @include paths are relative to the including file's folder, not to the
 * working directory; errors in an included file name that file and line. */
static void
test_include_relative_to_file(void **state)
{
	char dir[] = "/tmp/sluice-test-inc.XXXXXX", main_path[256], sub[256], err[512], want[512];
	struct sl_config *cfg;

	(void)state;
	unsetenv("SLUICE_KAFKA_BROKERS");
	assert_non_null(mkdtemp(dir));
	snprintf(sub, sizeof(sub), "%s/conf.d", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	write_at(dir, "main.conf", "# settings\n@include \"conf.d/common.conf\"\njobs = ( { type = \"a\"; } );\n"
	                           "/* @include \"nope.conf\" */\n");
	write_at(sub, "common.conf", "executors = 7;\n  @include \"kafka.conf\"\n");
	write_at(sub, "kafka.conf", "kafka: { brokers = \"k:1\"; };\n");
	snprintf(main_path, sizeof(main_path), "%s/main.conf", dir);
	cfg = sl_config_load(main_path, err, sizeof(err));
	if (cfg == NULL)
		fail_msg("%s", err);
	assert_int_equal(cfg->executors, 7);
	assert_string_equal(cfg->brokers, "k:1");
	sl_config_destroy(cfg);

	/* An absolute include, and an error inside it. */
	snprintf(want, sizeof(want), "@include \"%s/kafka.conf\"\njobs = ( { type = \"a\"; } );\n", sub);
	write_at(dir, "main.conf", want);
	write_at(sub, "kafka.conf", "\nkafka: { brokerz = \"k:1\"; };\n");
	assert_null(sl_config_load(main_path, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s/kafka.conf:2: unknown setting \"kafka.brokerz\"", sub);
	assert_string_equal(err, want);
	write_at(sub, "kafka.conf", "kafka: { brokers = = 1; };\n");
	assert_null(sl_config_load(main_path, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s/kafka.conf:1: syntax error", sub);
	assert_string_equal(err, want);
	write_at(sub, "kafka.conf", "executors = 4294967300;\n");
	assert_null(sl_config_load(main_path, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s/kafka.conf:1: integer 4294967300 is out of range", sub);
	assert_string_equal(err, want);

	/* A file that includes itself. */
	write_at(dir, "main.conf", "@include \"main.conf\"\n");
	assert_null(sl_config_load(main_path, err, sizeof(err)));
	assert_non_null(strstr(err, "includes nested more than 10 deep"));

	snprintf(want, sizeof(want), "rm -rf '%s'", dir);
	assert_int_equal(system(want), 0);
}

static void
test_secret_values_not_echoed(void **state)
{
	char err[512];
	struct sl_config *cfg;

	(void)state;
	cfg = sl_config_load(write_conf("jobs = ( { type = \"a\"; } );\n"
	                                "kafka: { properties = [ \"sasl.pasword=hunter2-secret\" ]; };\n"),
	                     err, sizeof(err));
	unlink(path);
	assert_null(cfg);
	assert_null(strstr(err, "hunter2"));
}

/* Loads text from a file of the given mode and returns what the load wrote
 * to stderr (the log) in out. */
static void
load_capturing_log(const char *text, mode_t mode, char *out, size_t out_size)
{
	char err[512], logpath[] = "/tmp/sluice-test-log.XXXXXX";
	struct sl_config *cfg;
	int logfd = mkstemp(logpath), saved = dup(STDERR_FILENO);
	ssize_t n;

	assert_true(logfd >= 0 && saved >= 0);
	write_conf(text);
	assert_int_equal(chmod(path, mode), 0);
	dup2(logfd, STDERR_FILENO);
	cfg = sl_config_load(path, err, sizeof(err));
	dup2(saved, STDERR_FILENO);
	close(saved);
	unlink(path);
	if (cfg == NULL)
		fail_msg("%s", err);
	sl_config_destroy(cfg);
	n = pread(logfd, out, out_size - 1, 0);
	out[n > 0 ? n : 0] = '\0';
	close(logfd);
	unlink(logpath);
}

static void
test_warns_about_readable_secrets(void **state)
{
	char log[2048];

	(void)state;
	unsetenv("SLUICE_PG_CONNINFO");
	load_capturing_log("postgres: { conninfo = \"postgresql://app:hunter2@db/x\"; };\n"
	                   "jobs = ( { type = \"a\"; } );\n", 0644, log, sizeof(log));
	assert_non_null(strstr(log, "holds a secret (a password in postgres.conninfo) but is readable by others"));
	assert_non_null(strstr(log, path));
	assert_null(strstr(log, "hunter2"));
	load_capturing_log("postgres: { conninfo = \"host=db\tpassword=hunter2\"; };\n"
	                   "jobs = ( { type = \"a\"; } );\n", 0640, log, sizeof(log));
	assert_non_null(strstr(log, "readable by its group"));
	load_capturing_log("kafka: { properties = [ \"sasl.password=hunter2\" ]; };\n"
	                   "jobs = ( { type = \"a\"; } );\n", 0644, log, sizeof(log));
	assert_non_null(strstr(log, "holds a secret (sasl.password)"));
	load_capturing_log("kafka: { properties = [ \"ssl.key.password=hunter2\" ]; };\n"
	                   "jobs = ( { type = \"a\"; } );\n", 0644, log, sizeof(log));
	assert_non_null(strstr(log, "holds a secret (ssl.key.password)"));
	/* Private files, and readable files without a secret, are fine. */
	load_capturing_log("postgres: { conninfo = \"password=hunter2\"; };\n"
	                   "kafka: { properties = [ \"sasl.password=hunter2\" ]; };\n"
	                   "jobs = ( { type = \"a\"; } );\n", 0600, log, sizeof(log));
	assert_string_equal(log, "");
	load_capturing_log("postgres: { conninfo = \"host=db\"; };\njobs = ( { type = \"a\"; } );\n", 0644, log,
	                   sizeof(log));
	assert_string_equal(log, "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_sample_file_loads),
		cmocka_unit_test(test_session_bounds_follow_the_session_timeout),
		cmocka_unit_test(test_env_overrides),
		cmocka_unit_test(test_pooling),
		cmocka_unit_test(test_isolation_read_committed_accepted),
		cmocka_unit_test(test_job_retry_inherits_and_overrides),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_outbox_section),
		cmocka_unit_test(test_secret_values_not_echoed),
		cmocka_unit_test(test_large_numbers_elsewhere),
		cmocka_unit_test(test_include_relative_to_file),
		cmocka_unit_test(test_warns_about_readable_secrets),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
