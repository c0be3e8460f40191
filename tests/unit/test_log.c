/* test_log.c -- unit tests for log.c: levels and secret redaction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include "log.h"

static void
test_level_parse(void **state)
{
	(void)state;
	assert_int_equal(sl_log_level_parse("error"), SL_LOG_ERROR);
	assert_int_equal(sl_log_level_parse("warning"), SL_LOG_WARN);
	assert_int_equal(sl_log_level_parse("debug"), SL_LOG_DEBUG);
	assert_int_equal(sl_log_level_parse("loud"), -1);
}

/* sl_log_redact() goes through libpq's parser (sl_pg_conninfo_redact()):
 * the pairs come back in libpq's order, secrets as "***". */
static void
test_redact_keyword(void **state)
{
	char buf[256];

	(void)state;
	sl_log_redact("host=db password=s3cret user=app", buf, sizeof(buf));
	assert_string_equal(buf, "user=app password=*** host=db");
	sl_log_redact("password = 'a b\\' c' dbname=x", buf, sizeof(buf));
	assert_string_equal(buf, "password=*** dbname=x");
	sl_log_redact("host=db user=app", buf, sizeof(buf));
	assert_string_equal(buf, "user=app host=db");
}

static void
test_redact_uri(void **state)
{
	char buf[256];

	(void)state;
	sl_log_redact("postgresql://app:s3cret@db:5432/x", buf, sizeof(buf));
	assert_string_equal(buf, "user=app password=*** dbname=x host=db port=5432");
	sl_log_redact("postgres://db/x", buf, sizeof(buf));
	assert_string_equal(buf, "dbname=x host=db");
}

/* The forms a pattern matcher missed: a password in a URI's query, pairs
 * separated by a tab or a newline, sslpassword, and a parse error. */
static void
test_redact_hostile_forms(void **state)
{
	static const char *const forms[] = {
		"postgresql://app@db/x?password=s3cret",
		"host=db\tpassword=s3cret",
		"host=db\npassword=s3cret",
		"host=db sslpassword=s3cret",
		"host=db password=s3 cret",
		NULL,
	};
	const char *const *f;
	char buf[256];

	(void)state;
	for (f = forms; *f != NULL; f++) {
		sl_log_redact(*f, buf, sizeof(buf));
		if (strstr(buf, "s3") != NULL || strstr(buf, "cret") != NULL)
			fail_msg("\"%s\" redacted to \"%s\"", *f, buf);
	}
}

/* Logs msg (with job id `job`) in `format` and returns what reached
 * stderr, a new string. */
static char *
log_capture(enum sl_log_format format, const char *job, const char *msg)
{
	char path[] = "/tmp/sluice-test-log.XXXXXX", *out = calloc(1, 65536);
	int fd = mkstemp(path), saved = dup(STDERR_FILENO);
	ssize_t n;

	assert_true(fd >= 0 && saved >= 0 && out != NULL);
	sl_log_set_format(format);
	dup2(fd, STDERR_FILENO);
	sl_log_job_error(job, "%s", msg);
	dup2(saved, STDERR_FILENO);
	close(saved);
	sl_log_set_format(SL_LOG_KV);
	n = pread(fd, out, 65535, 0);
	out[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(path);
	return out;
}

/* A message longer than a line still gives one valid JSON line, cut
 * between characters, that says it was truncated. */
static void
test_json_long_lines(void **state)
{
	static const char *const pieces[] = { "a", "\xc3\xa9", "\xe2\x82\xac", "\"", "\\", "\n" };
	char *msg = malloc(12001), *out, *job = malloc(5001);
	json_error_t jerr;
	json_t *doc;
	size_t i, off, p;

	(void)state;
	for (p = 0; p < sizeof(pieces) / sizeof(pieces[0]); p++) {
		for (off = 0, i = 0; off + 4 < 12000; i++)
			off += (size_t)sprintf(msg + off, "%s", pieces[(p + i) % (sizeof(pieces) / sizeof(pieces[0]))]);
		out = log_capture(SL_LOG_JSON, "job-1", msg);
		assert_int_equal(out[strlen(out) - 1], '\n');
		assert_ptr_equal(strchr(out, '\n'), out + strlen(out) - 1);
		assert_true(strlen(out) <= 4096);
		doc = json_loads(out, 0, &jerr);
		if (doc == NULL)
			fail_msg("not JSON (%s): %.200s...", jerr.text, out);
		assert_true(json_is_true(json_object_get(doc, "truncated")));
		assert_true(strlen(json_string_value(json_object_get(doc, "msg"))) > 1000);
		assert_null(json_object_get(doc, "job"));
		json_decref(doc);
		free(out);
	}
	/* A short message with a long job id: the id is cut instead. */
	memset(job, 'j', 5000);
	job[5000] = '\0';
	out = log_capture(SL_LOG_JSON, job, "short");
	assert_non_null(doc = json_loads(out, 0, &jerr));
	assert_string_equal(json_string_value(json_object_get(doc, "msg")), "short");
	assert_true(json_is_true(json_object_get(doc, "truncated")));
	json_decref(doc);
	free(out);
	/* Short lines are untouched. */
	out = log_capture(SL_LOG_JSON, "job-1", "fine");
	assert_non_null(doc = json_loads(out, 0, &jerr));
	assert_null(json_object_get(doc, "truncated"));
	assert_string_equal(json_string_value(json_object_get(doc, "job")), "job-1");
	json_decref(doc);
	free(out);
	out = log_capture(SL_LOG_KV, NULL, msg);
	assert_ptr_equal(strchr(out, '\n'), out + strlen(out) - 1);
	assert_non_null(strstr(out, "truncated=true\n"));
	free(out);
	free(msg);
	free(job);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_level_parse),
		cmocka_unit_test(test_redact_keyword),
		cmocka_unit_test(test_redact_uri),
		cmocka_unit_test(test_redact_hostile_forms),
		cmocka_unit_test(test_json_long_lines),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
