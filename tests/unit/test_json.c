/* test_json.c -- unit tests for json.c: a schema's "integer" read as an
 * int64, the schema validator agreeing with it, and JSON text written as
 * json_dumps() writes it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "json.h"
#include "schema.h"
#include "text.h"

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

/* Returns what sl_json_write() writes for v (borrowed); the caller frees it. */
static char *
written(json_t *v)
{
	struct sl_text t = { 0 };

	assert_int_equal(sl_json_write(&t, v), 0);
	assert_int_equal(t.oom, 0);
	assert_non_null(t.p);
	return t.p;
}

/* Asserts that sl_json_write() writes v (released here) as json_dumps()
 * does with the flags result events use. */
static void
assert_written_as_dumped(json_t *v)
{
	char *ours, *theirs;

	assert_non_null(v);
	ours = written(v);
	theirs = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	assert_non_null(theirs);
	assert_string_equal(ours, theirs);
	free(ours);
	free(theirs);
	json_decref(v);
}

/* Every kind of value as json_dumps() writes it: nesting, key order (as
 * inserted, not sorted), escapes, NUL in keys and strings, the integer
 * extremes, reals, and UTF-8 of every length. */
static void
test_write_like_jansson(void **state)
{
	static const char *const texts[] = {
		"{\"zeta\":0,\"alpha\":\"tab\\tquote\\\"nl\\n\\u007f\\u00e9\\\\/\",\"list\":[-9223372036854775808,"
		"9223372036854775807,-1,0.1,1e300,-0.0,3.0,1e-7,true,false,null,{},[]],\"m\":{\"n\":{\"o\":\"p\"}}}",
		"\"\"", "0", "-0", "1.5e-7", "123456789012345678", "null", "true", "[]", "{}",
		"\"\\u0001\\u0008\\u000c\\u001f\\u0020 \\u2028\\u2029 \\u00e9\\u20ac\\ud83d\\ude00\"",
		"[[[[[[[[[[\"deep\"]]]]]]]]]]", "{\"\":{\"\":[\"\"]}}",
	};
	static const char nul_key[] = "k\0\"\x01";
	json_error_t jerr;
	json_t *v;
	char all[128];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		v = json_loads(texts[i], JSON_DECODE_ANY, &jerr);
		if (v == NULL)
			fail_msg("%s: %s", texts[i], jerr.text);
		assert_written_as_dumped(v);
	}
	for (i = 0; i < sizeof(all); i++)
		all[i] = (char)i;
	assert_written_as_dumped(json_stringn(all, sizeof(all)));
	v = json_object();
	assert_int_equal(json_object_setn_new(v, nul_key, sizeof(nul_key) - 1, json_stringn("a\0b", 3)), 0);
	assert_int_equal(json_object_set_new(v, "b", json_real(-1.25e-300)), 0);
	assert_written_as_dumped(v);
}

/* Bytes json_dumps() cannot write (it fails) become U+FFFD, one per byte
 * that starts no valid sequence, in strings and in keys. */
static void
test_write_invalid_utf8(void **state)
{
	json_t *v;
	char *a;

	(void)state;
	v = json_stringn_nocheck("caf\xe9 \xc3\xa9 \xed\xa0\x80 \xc3", 13);
	a = written(v);
	assert_string_equal(a, "\"caf\xef\xbf\xbd \xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd\"");
	free(a);
	json_decref(v);

	v = json_object();
	assert_int_equal(json_object_setn_nocheck(v, "\xff\"", 2, json_true()), 0);
	a = written(v);
	assert_string_equal(a, "{\"\xef\xbf\xbd\\\"\":true}");
	free(a);
	json_decref(v);
}

/* Output deeper than any parsed job (a job's data wrapped) is written; a
 * cycle fails instead of recursing forever. */
static void
test_write_deep_and_cycle(void **state)
{
	struct sl_text t = { 0 };
	json_t *v, *arr, *cycle;
	char *a;
	int i, n = JSON_PARSER_MAX_DEPTH + 10;

	(void)state;
	v = json_array();
	for (i = 1; i < n; i++) {
		arr = json_array();
		assert_int_equal(json_array_append_new(arr, v), 0);
		v = arr;
	}
	a = written(v);
	assert_int_equal(strlen(a), 2 * (size_t)n);
	for (i = 0; i < n; i++) {
		assert_int_equal(a[i], '[');
		assert_int_equal(a[n + i], ']');
	}
	free(a);
	json_decref(v);

	cycle = json_object();
	arr = json_array();
	assert_int_equal(json_array_append(arr, cycle), 0);
	assert_int_equal(json_object_set(cycle, "a", arr), 0);
	assert_int_equal(sl_json_write(&t, cycle), -1);
	assert_int_equal(t.oom, 1);
	free(t.p);
	json_array_clear(arr);
	json_decref(arr);
	json_decref(cycle);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_int64),
		cmocka_unit_test(test_agrees_with_schema),
		cmocka_unit_test(test_write_like_jansson),
		cmocka_unit_test(test_write_invalid_utf8),
		cmocka_unit_test(test_write_deep_and_cycle),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
