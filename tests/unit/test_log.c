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

static void
test_redact_keyword(void **state)
{
	char buf[256];

	(void)state;
	sl_log_redact("host=db password=s3cret user=app", buf, sizeof(buf));
	assert_string_equal(buf, "host=db password=*** user=app");
	sl_log_redact("password = 'a b\\' c' dbname=x", buf, sizeof(buf));
	assert_string_equal(buf, "password=*** dbname=x");
	sl_log_redact("host=db user=app", buf, sizeof(buf));
	assert_string_equal(buf, "host=db user=app");
	assert_null(strstr(buf, "s3cret"));
}

static void
test_redact_uri(void **state)
{
	char buf[256];

	(void)state;
	sl_log_redact("postgresql://app:s3cret@db:5432/x", buf, sizeof(buf));
	assert_string_equal(buf, "postgresql://app:***@db:5432/x");
	sl_log_redact("postgres://db/x", buf, sizeof(buf));
	assert_string_equal(buf, "postgres://db/x");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_level_parse),
		cmocka_unit_test(test_redact_keyword),
		cmocka_unit_test(test_redact_uri),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
