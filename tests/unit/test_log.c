/* test_log.c -- unit tests for log.c: levels and secret redaction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_level_parse),
		cmocka_unit_test(test_redact_keyword),
		cmocka_unit_test(test_redact_uri),
		cmocka_unit_test(test_redact_hostile_forms),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
