/* test_json.c -- unit tests for json.c: a schema's "integer" read as an
 * int64, and the schema validator agreeing with it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "json.h"
#include "schema.h"

/* Decodes `text` (one JSON value) and reads it; returns sl_json_int64's
 * return code, the value in *out. */
static int
read_int64(const char *text, json_int_t *out)
{
	json_error_t jerr;
	json_t *v = json_loads(text, JSON_DECODE_ANY, &jerr);
	int rc;

	assert_non_null(v);
	rc = sl_json_int64(v, out);
	json_decref(v);
	return rc;
}

static void
test_int64(void **state)
{
	json_int_t v = 42;

	(void)state;
	assert_int_equal(read_int64("5", &v), 0);
	assert_int_equal(v, 5);
	assert_int_equal(read_int64("5.0", &v), 0);
	assert_int_equal(v, 5);
	assert_int_equal(read_int64("5e0", &v), 0);
	assert_int_equal(v, 5);
	assert_int_equal(read_int64("-3e2", &v), 0);
	assert_int_equal(v, -300);
	assert_int_equal(read_int64("-0.0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(read_int64("9223372036854775807", &v), 0);
	assert_true(v == INT64_MAX);
	assert_int_equal(read_int64("9007199254740991.0", &v), 0);
	assert_true(v == 9007199254740991LL);
	assert_int_equal(read_int64("-9223372036854775808.0", &v), 0);
	assert_true(v == INT64_MIN);

	v = 42;
	assert_int_equal(read_int64("5.5", &v), -1);
	assert_int_equal(v, 0);
	assert_int_equal(read_int64("0.1", &v), -1);
	assert_int_equal(read_int64("9223372036854775808.0", &v), -1);
	assert_int_equal(read_int64("-9223372036854777856.0", &v), -1);
	assert_int_equal(read_int64("1e300", &v), -1);
	assert_int_equal(read_int64("\"5\"", &v), -1);
	assert_int_equal(read_int64("true", &v), -1);
	assert_int_equal(read_int64("null", &v), -1);
	v = 42;
	assert_int_equal(sl_json_int64(NULL, &v), -1);
	assert_int_equal(v, 0);
}

/* Whatever {"type": "integer"} accepts within int64, sl_json_int64 reads,
 * and whatever it refuses, sl_json_int64 refuses: one rule. */
static void
test_agrees_with_schema(void **state)
{
	static const char *const values[] = {
		"0", "1", "-1", "1.0", "-1.0", "5e0", "1.5", "-0.5", "1e-7", "100.000",
		"9007199254740993", "9007199254740992.0", "\"1\"", "null", "[1]",
	};
	char err[256];
	json_error_t jerr;
	json_t *doc = json_loads("{\"type\":\"integer\"}", 0, &jerr);
	sl_schema_t *s = sl_schema_compile(doc, NULL, NULL, 0, err, sizeof(err));
	json_int_t out;
	size_t i;

	(void)state;
	assert_non_null(s);
	for (i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		json_t *v = json_loads(values[i], JSON_DECODE_ANY, &jerr);
		int valid;

		assert_non_null(v);
		valid = sl_schema_validate(s, v, NULL, 0, NULL) == 0;
		if (valid != (sl_json_int64(v, &out) == 0))
			fail_msg("%s: the schema says %s, sl_json_int64 disagrees", values[i],
			         valid ? "integer" : "not an integer");
		assert_int_equal(valid, sl_json_is_integral(v));
		json_decref(v);
	}
	sl_schema_destroy(s);
	json_decref(doc);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_int64),
		cmocka_unit_test(test_agrees_with_schema),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
