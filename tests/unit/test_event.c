/* test_event.c -- unit tests for event.c: every decode error code with a
 * representative payload, hostile payloads (invalid UTF-8, deep nesting, huge
 * numbers, NUL bytes, control characters), a complete event, binary content
 * mode against its structured twin, result events byte for byte, UUIDs and
 * timestamps. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "event.h"

#define GOOD_HEAD "{\"specversion\":\"1.0\",\"id\":\"j-1\",\"source\":\"shop\",\"type\":\"ledger.transfer\""

/* True when s is valid UTF-8 and holds no C0 control character or DEL. */
static int
is_clean(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n, i;

	while (*p) {
		if (*p < 0x20 || *p == 0x7f)
			return 0;
		if (*p < 0x80) {
			p++;
			continue;
		}
		n = *p >= 0xf0 ? 4 : *p >= 0xe0 ? 3 : *p >= 0xc2 ? 2 : 0;
		if (n == 0 || *p > 0xf4)
			return 0;
		for (i = 1; i < n; i++)
			if ((p[i] & 0xc0) != 0x80)
				return 0;
		p += n;
	}
	return 1;
}

/* Checks a decoder's failure: rc -1, want_code, a clean message that
 * contains want_text, and ev cleared. */
static void
expect_failed(int rc, const struct sl_event *ev, const char *code, const char *msg, const char *want_code,
              const char *want_text)
{
	assert_int_equal(rc, -1);
	assert_string_equal(code, want_code);
	if (strstr(msg, want_text) == NULL)
		fail_msg("message \"%s\" lacks \"%s\"", msg, want_text);
	assert_true(is_clean(msg));
	assert_null(ev->root);
	assert_null(ev->id);
	assert_null(ev->data);
}

/* Decodes n bytes of s, expects failure with want_code and a message that
 * contains want_text, is clean and leaves ev cleared. */
static void
expect_error_n(const char *s, size_t n, size_t max, const char *want_code, const char *want_text)
{
	struct sl_event ev;
	char code[32], msg[256];

	memset(&ev, 0xa5, sizeof(ev));
	expect_failed(sl_event_decode(s, n, max, &ev, code, msg, sizeof(msg)), &ev, code, msg, want_code,
	              want_text);
}

static void
expect_error(const char *s, const char *want_code, const char *want_text)
{
	expect_error_n(s, strlen(s), 0, want_code, want_text);
}

static void
expect_ok(const char *s, struct sl_event *ev)
{
	char code[32], msg[256];

	if (sl_event_decode(s, strlen(s), 0, ev, code, msg, sizeof(msg)) != 0)
		fail_msg("decode failed: %s: %s", code, msg);
}

static void
test_decode_good_event(void **state)
{
	struct sl_event ev;
	const char *s = GOOD_HEAD ",\"subject\":\"acct-7\",\"time\":\"2026-11-28T21:38:12.123456Z\","
	                "\"datacontenttype\":\"application/json; charset=utf-8\",\"traceparent\":\"x\","
	                "\"data\":{\"from\":\"a\",\"to\":\"b\",\"amount\":\"10.00\",\"n\":[1,2.5,null]}}";

	(void)state;
	expect_ok(s, &ev);
	assert_non_null(ev.root);
	assert_string_equal(ev.id, "j-1");
	assert_string_equal(ev.source, "shop");
	assert_string_equal(ev.type, "ledger.transfer");
	assert_string_equal(ev.subject, "acct-7");
	assert_string_equal(ev.time, "2026-11-28T21:38:12.123456Z");
	assert_true(json_is_object(ev.data));
	assert_string_equal(json_string_value(json_object_get(ev.data, "amount")), "10.00");
	assert_ptr_equal(ev.data, json_object_get(ev.root, "data"));
	sl_event_clear(&ev);
	assert_null(ev.root);
	assert_null(ev.id);
	sl_event_clear(&ev);
	sl_event_clear(NULL);
}

static void
test_decode_minimal_and_nulls(void **state)
{
	struct sl_event ev;

	(void)state;
	expect_ok(GOOD_HEAD ",\"data\":{}}", &ev);
	assert_null(ev.subject);
	assert_null(ev.time);
	assert_int_equal(json_object_size(ev.data), 0);
	sl_event_clear(&ev);
	/* The CloudEvents JSON format reads a null attribute as an absent one. */
	expect_ok(GOOD_HEAD ",\"subject\":null,\"time\":null,\"datacontenttype\":null,\"data\":{}}", &ev);
	assert_null(ev.subject);
	assert_null(ev.time);
	sl_event_clear(&ev);
	/* Whitespace, other key orders and UTF-8 are fine. */
	expect_ok(" {\n \"data\" : {\"name\":\"Zoë 東京\"},\"type\":\"t\",\"source\":\"s\",\"id\":\"é\","
	          "\"specversion\":\"1.0\"}\n",
	          &ev);
	assert_string_equal(ev.id, "é");
	sl_event_clear(&ev);
}

static void
test_decode_sql_looking_strings(void **state)
{
	struct sl_event ev;

	(void)state;
	expect_ok("{\"specversion\":\"1.0\",\"id\":\"1'; DROP TABLE sluice.jobs; --\",\"source\":\"s\","
	          "\"type\":\"t\",\"data\":{\"note\":\"'); delete from ledger where true; --\","
	          "\"x\":\"$1::text\"}}",
	          &ev);
	assert_string_equal(ev.id, "1'; DROP TABLE sluice.jobs; --");
	assert_string_equal(json_string_value(json_object_get(ev.data, "note")),
	                    "'); delete from ledger where true; --");
	sl_event_clear(&ev);
}

static void
test_decode_too_large(void **state)
{
	size_t limit = 1024 * 1024, n;
	char *big = malloc(limit + 2);
	struct sl_event ev;
	char code[32], msg[256];
	static const char head[] = GOOD_HEAD ",\"data\":{\"pad\":\"";

	(void)state;
	assert_non_null(big);
	/* A valid event of exactly the limit decodes. */
	n = strlen(head);
	memcpy(big, head, n);
	memset(big + n, 'x', limit - n - 3);
	memcpy(big + limit - 3, "\"}}", 3);
	assert_int_equal(sl_event_decode(big, limit, limit, &ev, code, msg, sizeof(msg)), 0);
	assert_int_equal(json_string_length(json_object_get(ev.data, "pad")), limit - n - 3);
	sl_event_clear(&ev);
	/* One byte more is refused before any parsing. */
	expect_error_n(big, limit + 1, limit, "message_too_large",
	               "message of 1048577 bytes exceeds the limit of 1048576 bytes");
	/* A limit of 0 means none. */
	assert_int_equal(sl_event_decode(big, limit, 0, &ev, code, msg, sizeof(msg)), 0);
	sl_event_clear(&ev);
	free(big);
}

static void
test_decode_empty(void **state)
{
	(void)state;
	expect_error_n(NULL, 0, 0, "empty_message", "message is empty");
	expect_error_n("", 0, 0, "empty_message", "message is empty");
	expect_error_n("{}", 0, 0, "empty_message", "message is empty");
	expect_error("   \n", "invalid_json", "line");
}

static void
test_decode_invalid_json(void **state)
{
	(void)state;
	expect_error(GOOD_HEAD ",\"data\":{\"a\":1", "invalid_json",
	             "invalid json at line 1, column 86: '}' expected near end of file");
	expect_error("hello", "invalid_json", "invalid json at line 1");
	expect_error("{\"a\":1} {\"b\":2}", "invalid_json", "end of file expected");
	expect_error("{'id':'x'}", "invalid_json", "invalid json");
	expect_error("{\"a\":1,}", "invalid_json", "invalid json");
	expect_error("{\"a\":\"\\u0000\"}", "invalid_json", "\\u0000 is not allowed in strings");
	expect_error("{\"a\":\"\\ud800\"}", "invalid_json", "invalid json");
	expect_error("{\"a\":NaN}", "invalid_json", "invalid json");
	/* A raw NUL byte, which jansson alone would skip. */
	expect_error_n("{\"a\":1\0}", 8, 0, "invalid_json", "NUL byte at offset 6");
	expect_error_n(GOOD_HEAD ",\"data\":{\"a\":\"x\0y\"}}", sizeof(GOOD_HEAD ",\"data\":{\"a\":\"x\0y\"}}") - 1,
	               0, "invalid_json", "NUL byte");
}

static void
test_decode_invalid_utf8(void **state)
{
	(void)state;
	expect_error(GOOD_HEAD ",\"data\":{\"a\":\"\xff\xfe\"}}", "invalid_json",
	             "unable to decode byte 0xff");
	expect_error(GOOD_HEAD ",\"data\":{\"a\":\"\xc0\xaf\"}}", "invalid_json", "invalid json");
	expect_error(GOOD_HEAD ",\"data\":{\"a\":\"\xed\xa0\x80\"}}", "invalid_json", "invalid json");
	expect_error("{\"\xe2\x82\":1}", "invalid_json", "invalid json");
	expect_error("\xef\xbb\xbf{}", "invalid_json", "invalid json");
}

static void
test_decode_deep_nesting(void **state)
{
	enum { DEPTH = 100000 };
	char *s = malloc(DEPTH * 2 + 1);
	size_t i;

	(void)state;
	assert_non_null(s);
	memset(s, '[', DEPTH);
	expect_error_n(s, DEPTH, 0, "invalid_json", "nested deeper than");
	/* Objects nest the same way: {"a":{"a":... 20000 deep. */
	for (i = 0; i < DEPTH / 5; i++)
		memcpy(s + 5 * i, "{\"a\":", 5);
	expect_error_n(s, DEPTH, 0, "invalid_json", "nested deeper than");
	free(s);
}

static void
test_decode_number_out_of_range(void **state)
{
	(void)state;
	expect_error(GOOD_HEAD ",\"data\":{\"a\":1e400}}", "number_out_of_range",
	             "number 1e400 at line 1, column");
	expect_error(GOOD_HEAD ",\"data\":{\"a\":99999999999999999999}}", "number_out_of_range",
	             "number 99999999999999999999 at line 1");
	expect_error(GOOD_HEAD ",\"data\":{\"a\":-99999999999999999999}}", "number_out_of_range",
	             "out of range");
	expect_error("[1e400]", "number_out_of_range", "out of range");
	/* Limits themselves fit. */
	{
		struct sl_event ev;
		expect_ok(GOOD_HEAD ",\"data\":{\"a\":9223372036854775807,\"b\":-9223372036854775808,"
		                    "\"c\":1e308,\"d\":1e-400}}",
		          &ev);
		assert_int_equal(json_integer_value(json_object_get(ev.data, "a")), INT64_MAX);
		sl_event_clear(&ev);
	}
}

static void
test_decode_duplicate_keys(void **state)
{
	(void)state;
	expect_error("{\"specversion\":\"1.0\",\"id\":\"a\",\"id\":\"b\",\"source\":\"s\",\"type\":\"t\","
	             "\"data\":{}}",
	             "invalid_json", "at line 1, column 34: duplicate object key \"id\"");
	expect_error(GOOD_HEAD ",\"data\":{\"amount\":1,\"amount\":1000000}}", "invalid_json",
	             "duplicate object key");
}

static void
test_decode_not_an_object(void **state)
{
	(void)state;
	expect_error("[1,2]", "not_an_object", "message is an array, not a JSON object");
	expect_error("\"text\"", "not_an_object", "a string");
	expect_error("42", "not_an_object", "a number");
	expect_error("null", "not_an_object", "null");
	expect_error("true", "not_an_object", "a boolean");
}

static void
test_decode_missing_attribute(void **state)
{
	(void)state;
	expect_error("{\"id\":\"a\",\"source\":\"s\",\"type\":\"t\",\"data\":{}}", "missing_attribute",
	             "missing required attribute \"specversion\"");
	expect_error("{\"specversion\":\"1.0\",\"source\":\"s\",\"type\":\"t\",\"data\":{}}",
	             "missing_attribute", "missing required attribute \"id\"");
	expect_error("{\"specversion\":\"1.0\",\"id\":\"a\",\"type\":\"t\",\"data\":{}}",
	             "missing_attribute", "missing required attribute \"source\"");
	expect_error("{\"specversion\":\"1.0\",\"id\":\"a\",\"source\":\"s\",\"data\":{}}",
	             "missing_attribute", "missing required attribute \"type\"");
	expect_error("{\"specversion\":\"1.0\",\"id\":null,\"source\":\"s\",\"type\":\"t\",\"data\":{}}",
	             "missing_attribute", "\"id\"");
	expect_error("{}", "missing_attribute", "\"specversion\"");
}

static void
test_decode_specversion(void **state)
{
	(void)state;
	expect_error("{\"specversion\":\"0.3\",\"id\":\"a\",\"source\":\"s\",\"type\":\"t\",\"data\":{}}",
	             "unsupported_specversion", "unsupported specversion \"0.3\"");
	expect_error("{\"specversion\":\"1.0 \",\"id\":\"a\",\"source\":\"s\",\"type\":\"t\",\"data\":{}}",
	             "unsupported_specversion", "\"1.0 \"");
	expect_error("{\"specversion\":1.0,\"id\":\"a\",\"source\":\"s\",\"type\":\"t\",\"data\":{}}",
	             "invalid_attribute", "attribute \"specversion\" must be a string, not a number");
}

static void
test_decode_invalid_attribute(void **state)
{
	char *s, *p;

	(void)state;
	expect_error("{\"specversion\":\"1.0\",\"id\":42,\"source\":\"s\",\"type\":\"t\",\"data\":{}}",
	             "invalid_attribute", "attribute \"id\" must be a non-empty string, not a number");
	expect_error("{\"specversion\":\"1.0\",\"id\":\"\",\"source\":\"s\",\"type\":\"t\",\"data\":{}}",
	             "invalid_attribute", "attribute \"id\" must be a non-empty string");
	expect_error("{\"specversion\":\"1.0\",\"id\":\"a\",\"source\":[\"s\"],\"type\":\"t\",\"data\":{}}",
	             "invalid_attribute", "attribute \"source\" must be a non-empty string, not an array");
	expect_error("{\"specversion\":\"1.0\",\"id\":\"a\",\"source\":\"s\",\"type\":true,\"data\":{}}",
	             "invalid_attribute", "attribute \"type\" must be a non-empty string, not a boolean");
	expect_error(GOOD_HEAD ",\"subject\":7,\"data\":{}}", "invalid_attribute",
	             "attribute \"subject\" must be a non-empty string, not a number");
	expect_error(GOOD_HEAD ",\"subject\":\"\",\"data\":{}}", "invalid_attribute",
	             "attribute \"subject\"");
	expect_error(GOOD_HEAD ",\"time\":{},\"data\":{}}", "invalid_attribute",
	             "attribute \"time\" must be a non-empty string, not an object");
	expect_error(GOOD_HEAD ",\"datacontenttype\":5,\"data\":{}}", "invalid_attribute",
	             "attribute \"datacontenttype\"");

	/* 1024 bytes is the longest id; 1025 is refused. */
	s = malloc(2200);
	assert_non_null(s);
	p = s + sprintf(s, "{\"specversion\":\"1.0\",\"source\":\"s\",\"type\":\"t\",\"data\":{},\"id\":\"");
	memset(p, 'i', 1024);
	strcpy(p + 1024, "\"}");
	{
		struct sl_event ev;
		expect_ok(s, &ev);
		assert_int_equal(strlen(ev.id), 1024);
		sl_event_clear(&ev);
	}
	memset(p, 'i', 1025);
	strcpy(p + 1025, "\"}");
	expect_error(s, "invalid_attribute", "attribute \"id\" is 1025 bytes long, above the limit of 1024");
	free(s);
}

static void
test_decode_time(void **state)
{
	static const char *const good[] = {
		"2026-11-28T21:38:12Z",
		"2026-11-28T21:38:12.123456Z",
		"2026-11-28t21:38:12.1z",
		"2026-11-28T21:38:12+01:00",
		"2026-11-28T21:38:12.5-05:30",
		"2016-12-31T23:59:60Z",
	};
	static const char *const bad[] = {
		"yesterday",
		"2026-11-28",
		"2026-11-28 21:38:12Z",
		"2026-11-28T21:38:12",
		"2026-13-01T00:00:00Z",
		"2026-11-28T24:00:00Z",
		"2026-11-28T21:38:12.Z",
		"2026-11-28T21:38:12Z ",
		"2026-11-28T21:38:12+0100",
		"1700000000",
	};
	char buf[256];
	struct sl_event ev;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(buf, sizeof(buf), GOOD_HEAD ",\"time\":\"%s\",\"data\":{}}", good[i]);
		expect_ok(buf, &ev);
		assert_string_equal(ev.time, good[i]);
		sl_event_clear(&ev);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(buf, sizeof(buf), GOOD_HEAD ",\"time\":\"%s\",\"data\":{}}", bad[i]);
		expect_error(buf, "invalid_attribute", "attribute \"time\" must be an RFC 3339 timestamp");
	}
}

static void
test_decode_datacontenttype(void **state)
{
	struct sl_event ev;

	(void)state;
	expect_ok(GOOD_HEAD ",\"datacontenttype\":\"application/json\",\"data\":{}}", &ev);
	sl_event_clear(&ev);
	expect_ok(GOOD_HEAD ",\"datacontenttype\":\"Application/JSON;charset=utf-8\",\"data\":{}}", &ev);
	sl_event_clear(&ev);
	expect_error(GOOD_HEAD ",\"datacontenttype\":\"text/plain\",\"data\":{}}", "invalid_attribute",
	             "attribute \"datacontenttype\" must be \"application/json\", not \"text/plain\"");
	expect_error(GOOD_HEAD ",\"datacontenttype\":\"application/jsonx\",\"data\":{}}",
	             "invalid_attribute", "\"application/jsonx\"");
}

static void
test_decode_invalid_data(void **state)
{
	(void)state;
	expect_error(GOOD_HEAD "}", "invalid_data", "missing attribute \"data\"");
	expect_error(GOOD_HEAD ",\"data\":null}", "invalid_data", "missing attribute \"data\"");
	expect_error(GOOD_HEAD ",\"data_base64\":\"AAEC\"}", "invalid_data", "data_base64");
	expect_error(GOOD_HEAD ",\"data\":[1,2]}", "invalid_data",
	             "attribute \"data\" must be a JSON object, not an array");
	expect_error(GOOD_HEAD ",\"data\":\"{}\"}", "invalid_data", "not a string");
	expect_error(GOOD_HEAD ",\"data\":3}", "invalid_data", "not a number");
}

/* Input echoed in messages is escaped and capped; a short errbuf never ends
 * inside a UTF-8 character. */
static void
test_decode_message_hygiene(void **state)
{
	char buf[1024], code[32], msg[512], small[27];
	struct sl_event ev;
	size_t i;

	(void)state;
	/* Escape sequences decode to raw control characters inside jansson. */
	expect_error("{\"specversion\":\"\\u001b[31mred\\n\\r\\t\\u007f\\u0085\\u2028\\\"\\\\\","
	             "\"id\":\"a\",\"source\":\"s\",\"type\":\"t\",\"data\":{}}",
	             "unsupported_specversion",
	             "\"\\x1b[31mred\\n\\r\\t\\x7f\\u0085\\u2028\\\"\\\\\"");
	/* A long value is cut at 64 characters. */
	i = (size_t)snprintf(buf, sizeof(buf), "{\"specversion\":\"");
	memset(buf + i, 'v', 300);
	i += 300;
	snprintf(buf + i, sizeof(buf) - i, "\",\"id\":\"a\",\"source\":\"s\",\"type\":\"t\",\"data\":{}}");
	assert_int_equal(sl_event_decode(buf, strlen(buf), 0, &ev, code, msg, sizeof(msg)), -1);
	assert_string_equal(code, "unsupported_specversion");
	assert_non_null(strstr(msg, "\"vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv...\""));
	assert_true(strlen(msg) < 150);
	/* jansson's own echo of a bad token is escaped too. */
	expect_error("{\"a\":tru\x01}", "invalid_json", "invalid json");
	expect_error("{\"a\x01\":1}", "invalid_json", "control character");
	/* "unsupported specversion \"" is 25 bytes: a 27-byte buffer would end
	 * inside the first "é" and must be cut before it. */
	snprintf(buf, sizeof(buf), "{\"specversion\":\"ééé\",\"id\":\"a\",\"source\":\"s\",\"type\":\"t\","
	                           "\"data\":{}}");
	assert_int_equal(sl_event_decode(buf, strlen(buf), 0, &ev, code, small, sizeof(small)), -1);
	assert_string_equal(small, "unsupported specversion \"");
	assert_true(is_clean(small));
	/* NULL code and errbuf are tolerated. */
	assert_int_equal(sl_event_decode("[]", 2, 0, &ev, NULL, NULL, 0), -1);
	assert_null(ev.root);
}

static const char result_time[] = "2026-11-28T21:38:12.123456Z";

static void
test_result_succeeded_golden(void **state)
{
	json_t *output = json_pack("{s:i,s:s,s:{s:b,s:n},s:[i,s]}", "transfer_id", 42, "balance",
	                           "10.00", "z", "ok", 1, "null", "list", 1, "é");
	struct sl_result r = {
		.status = "succeeded",
		.job_id = "j-1",
		.job_source = "shop",
		.job_type = "ledger.transfer",
		.output = output,
	};
	char *a, *b;

	(void)state;
	assert_non_null(output);
	a = sl_event_result(&r, "5c0c2f4e-8a43-4b4f-9a3e-0f6a3c2d1e7b", "sluice", result_time);
	assert_non_null(a);
	assert_string_equal(
		a,
		"{\"specversion\":\"1.0\",\"id\":\"5c0c2f4e-8a43-4b4f-9a3e-0f6a3c2d1e7b\","
		"\"source\":\"sluice\",\"type\":\"ledger.transfer.result\",\"subject\":\"j-1\","
		"\"time\":\"2026-11-28T21:38:12.123456Z\",\"datacontenttype\":\"application/json\","
		"\"data\":{\"status\":\"succeeded\",\"id\":\"j-1\",\"source\":\"shop\","
		"\"type\":\"ledger.transfer\",\"output\":{\"transfer_id\":42,\"balance\":\"10.00\","
		"\"z\":{\"ok\":true,\"null\":null},\"list\":[1,\"é\"]}}}");
	/* Same inputs, same bytes; the borrowed output is left as it was. */
	b = sl_event_result(&r, "5c0c2f4e-8a43-4b4f-9a3e-0f6a3c2d1e7b", "sluice", result_time);
	assert_string_equal(a, b);
	assert_int_equal(output->refcount, 1);
	free(a);
	free(b);
	/* No output on success gives an explicit null. */
	r.output = NULL;
	a = sl_event_result(&r, "r", "sluice", result_time);
	assert_non_null(strstr(a, ",\"output\":null}}"));
	free(a);
	json_decref(output);
}

static void
test_result_rejected_failed_golden(void **state)
{
	struct sl_result r = {
		.status = "rejected",
		.job_id = "j-2",
		.job_source = "shop",
		.job_type = "ledger.transfer",
		.error_code = "insufficient_funds",
		.error_message = "account \"a\" has 5.00, transfer needs 10.00",
	};
	char *a;

	(void)state;
	a = sl_event_result(&r, "r-2", "sluice", result_time);
	assert_string_equal(
		a, "{\"specversion\":\"1.0\",\"id\":\"r-2\",\"source\":\"sluice\","
		   "\"type\":\"ledger.transfer.result\",\"subject\":\"j-2\","
		   "\"time\":\"2026-11-28T21:38:12.123456Z\",\"datacontenttype\":\"application/json\","
		   "\"data\":{\"status\":\"rejected\",\"id\":\"j-2\",\"source\":\"shop\","
		   "\"type\":\"ledger.transfer\",\"error\":{\"code\":\"insufficient_funds\","
		   "\"message\":\"account \\\"a\\\" has 5.00, transfer needs 10.00\"}}}");
	free(a);

	r.status = "failed";
	r.error_code = SL_ERR_SCHEMA_VIOLATION;
	r.error_message = "line one\nline two\ttab";
	a = sl_event_result(&r, "r-3", "sluice", result_time);
	assert_string_equal(
		a, "{\"specversion\":\"1.0\",\"id\":\"r-3\",\"source\":\"sluice\","
		   "\"type\":\"ledger.transfer.result\",\"subject\":\"j-2\","
		   "\"time\":\"2026-11-28T21:38:12.123456Z\",\"datacontenttype\":\"application/json\","
		   "\"data\":{\"status\":\"failed\",\"id\":\"j-2\",\"source\":\"shop\","
		   "\"type\":\"ledger.transfer\",\"error\":{\"code\":\"schema_violation\","
		   "\"message\":\"line one\\nline two\\ttab\"}}}");
	free(a);
}

static void
test_result_unknown_job(void **state)
{
	struct sl_result r = {
		.status = "failed",
		.error_code = SL_ERR_INVALID_JSON,
		.error_message = "invalid json at line 1, column 6: unable to decode byte 0xff near '\"'",
	};
	char *a;

	(void)state;
	a = sl_event_result(&r, "r-4", "sluice", result_time);
	assert_string_equal(
		a, "{\"specversion\":\"1.0\",\"id\":\"r-4\",\"source\":\"sluice\","
		   "\"type\":\"sluice.unknown.result\",\"time\":\"2026-11-28T21:38:12.123456Z\","
		   "\"datacontenttype\":\"application/json\",\"data\":{\"status\":\"failed\",\"id\":null,"
		   "\"source\":null,\"type\":null,\"error\":{\"code\":\"invalid_json\","
		   "\"message\":\"invalid json at line 1, column 6: unable to decode byte 0xff near "
		   "'\\\"'\"}}}");
	free(a);
}

/* A message that is not UTF-8 (from a server in another encoding, say) must
 * not make the builder fail as if out of memory. */
static void
test_result_invalid_utf8_message(void **state)
{
	struct sl_result r = {
		.status = "failed",
		.job_id = "j",
		.job_source = "s",
		.job_type = "t",
		.error_code = "db_error",
		.error_message = "caf\xe9 \xc3\xa9 \xed\xa0\x80",
	};
	char *a;

	(void)state;
	a = sl_event_result(&r, "r", "sluice", result_time);
	assert_non_null(a);
	assert_non_null(strstr(a, "\"message\":\"caf\xef\xbf\xbd \xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""));
	free(a);
}

/* Asserts that text (freed here) is what jansson dumps for ref (released). */
static void
assert_dumped_as(char *text, json_t *ref)
{
	char *dumped = json_dumps(ref, JSON_COMPACT | JSON_PRESERVE_ORDER);

	assert_non_null(dumped);
	assert_string_equal(text, dumped);
	free(text);
	free(dumped);
	json_decref(ref);
}

/* The result text is written without jansson; its strings must come out as
 * jansson's json_dumps() would write them: every ASCII character, and UTF-8
 * of every length, inside every string field. */
static void
test_result_escapes_like_jansson(void **state)
{
	char s[256];
	struct sl_result r = { 0 };
	json_t *ref, *data, *err;
	char *a, *b;
	int i, n = 0;

	(void)state;
	for (i = 1; i < 128; i++)
		s[n++] = (char)i;
	strcpy(s + n, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80/end");
	r.status = "failed";
	r.job_id = s;
	r.job_source = s;
	r.job_type = s;
	r.error_code = s;
	r.error_message = s;
	a = sl_event_result(&r, s, s, s);
	assert_non_null(a);

	data = json_pack("{s:s, s:s, s:s, s:s}", "status", "failed", "id", s, "source", s, "type", s);
	err = json_pack("{s:s, s:s}", "code", s, "message", s);
	assert_non_null(data);
	assert_non_null(err);
	assert_int_equal(json_object_set_new(data, "error", err), 0);
	ref = json_object();
	assert_int_equal(json_object_set_new(ref, "specversion", json_string("1.0")), 0);
	assert_int_equal(json_object_set_new(ref, "id", json_string(s)), 0);
	assert_int_equal(json_object_set_new(ref, "source", json_string(s)), 0);
	b = malloc(strlen(s) + sizeof(".result"));
	sprintf(b, "%s.result", s);
	assert_int_equal(json_object_set_new(ref, "type", json_string(b)), 0);
	free(b);
	assert_int_equal(json_object_set_new(ref, "subject", json_string(s)), 0);
	assert_int_equal(json_object_set_new(ref, "time", json_string(s)), 0);
	assert_int_equal(json_object_set_new(ref, "datacontenttype", json_string("application/json")), 0);
	assert_int_equal(json_object_set_new(ref, "data", data), 0);
	assert_dumped_as(a, ref);
}

/* A handler's output is written as json_dumps() writes it: nesting, key
 * order, escapes, keys with NUL, the integer extremes and reals (the writer
 * itself, json.c, is tested in test_json.c and fuzzed by fuzz_json). */
static void
test_result_output_like_jansson(void **state)
{
	static const char odd_key[] = "k\0\"\x01";
	struct sl_result r = {
		.status = "succeeded",
		.job_id = "j-1",
		.job_source = "shop",
		.job_type = "t",
	};
	json_t *out, *ref, *data, *cycle, *arr;
	char *a;

	(void)state;
	out = json_pack("{s:i, s:s, s:[I, I, I, f, f, f, f, b, b, n, {}, []], s:{s:{s:s}}}",
	                "zeta", 0, "alpha", "tab\tquote\"nl\n\x7f\xc3\xa9",
	                "list", (json_int_t)LLONG_MIN, (json_int_t)LLONG_MAX, (json_int_t)-1,
	                0.1, 1e300, -0.0, 3.0, 1, 0,
	                "m", "n", "o", "p");
	assert_non_null(out);
	assert_int_equal(json_object_setn_new(out, odd_key, sizeof(odd_key) - 1, json_integer(7)), 0);
	r.output = out;
	a = sl_event_result(&r, "rid", "src", "2026-12-01T00:00:00Z");
	assert_non_null(a);

	data = json_pack("{s:s, s:s, s:s, s:s, s:O}", "status", "succeeded", "id", "j-1", "source",
	                 "shop", "type", "t", "output", out);
	ref = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o}", "specversion", "1.0", "id", "rid",
	                "source", "src", "type", "t.result", "subject", "j-1", "time",
	                "2026-12-01T00:00:00Z", "datacontenttype", "application/json", "data", data);
	assert_non_null(ref);
	assert_dumped_as(a, ref);
	json_decref(out);

	/* A cycle fails the event instead of recursing forever. */
	cycle = json_object();
	arr = json_array();
	assert_int_equal(json_array_append(arr, cycle), 0);
	assert_int_equal(json_object_set(cycle, "a", arr), 0);
	r.output = cycle;
	assert_null(sl_event_result(&r, "rid", "src", "2026-12-01T00:00:00Z"));
	json_array_clear(arr);
	json_decref(arr);
	json_decref(cycle);
}

/* A result event is itself a valid job-shaped CloudEvent. */
static void
test_result_round_trip(void **state)
{
	struct sl_result r = {
		.status = "succeeded",
		.job_id = "j-9",
		.job_source = "shop",
		.job_type = "ledger.open",
	};
	struct sl_event ev;
	char id[37], now[32], *a;

	(void)state;
	sl_event_uuid(id);
	sl_event_now(now);
	a = sl_event_result(&r, id, "sluice", now);
	assert_non_null(a);
	expect_ok(a, &ev);
	assert_string_equal(ev.id, id);
	assert_string_equal(ev.type, "ledger.open.result");
	assert_string_equal(ev.subject, "j-9");
	assert_string_equal(ev.time, now);
	assert_string_equal(json_string_value(json_object_get(ev.data, "status")), "succeeded");
	sl_event_clear(&ev);
	free(a);
}

static void
test_uuid(void **state)
{
	char a[37], b[37];
	int i;

	(void)state;
	sl_event_uuid(a);
	sl_event_uuid(b);
	assert_int_equal(strlen(a), 36);
	assert_string_not_equal(a, b);
	for (i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23)
			assert_int_equal(a[i], '-');
		else
			assert_non_null(strchr("0123456789abcdef", a[i]));
	}
	assert_int_equal(a[14], '4');
	assert_non_null(strchr("89ab", a[19]));
	/* Across refills of the random pool (32 UUIDs each): all distinct,
	 * all version 4. */
	{
		static char many[100][37];
		int j;

		for (i = 0; i < 100; i++) {
			sl_event_uuid(many[i]);
			assert_int_equal(strlen(many[i]), 36);
			assert_int_equal(many[i][14], '4');
			assert_non_null(strchr("89ab", many[i][19]));
			for (j = 0; j < i; j++)
				assert_string_not_equal(many[i], many[j]);
		}
	}
}

static void
test_now(void **state)
{
	char now[32];
	unsigned y, mo, d, h, mi, s, us;
	char z;

	(void)state;
	sl_event_now(now);
	assert_int_equal(strlen(now), 27);
	assert_int_equal(sscanf(now, "%4u-%2u-%2uT%2u:%2u:%2u.%6u%c", &y, &mo, &d, &h, &mi, &s, &us, &z),
	                 8);
	assert_true(y >= 2024 && mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h < 24 && mi < 60 &&
	            s <= 60 && us < 1000000);
	assert_int_equal(z, 'Z');
}

/* ---- binary content mode ------------------------------------------------- */

/* Headers of a binary-mode message, at most 16; `n` in use. */
struct hdrs {
	struct sl_event_header h[16];
	size_t n;
};

static void
hdr(struct hdrs *hs, const char *name, const char *value)
{
	assert_true(hs->n < 16);
	hs->h[hs->n].name = name;
	hs->h[hs->n].value = value;
	hs->h[hs->n].len = value ? strlen(value) : 0;
	hs->n++;
}

/* The four required attributes as headers, plus a header the decoder ignores. */
static void
good_headers(struct hdrs *hs)
{
	hs->n = 0;
	hdr(hs, "ce_specversion", "1.0");
	hdr(hs, "ce_id", "j-1");
	hdr(hs, "traceparent", "00-abc");
	hdr(hs, "ce_source", "shop");
	hdr(hs, "ce_type", "ledger.transfer");
}

static int
decode_binary(const char *value, const struct hdrs *hs, struct sl_event *ev, char *code, char *msg,
              size_t msg_size)
{
	return sl_event_decode_binary(value, value ? strlen(value) : 0, hs->h, hs->n, 0, ev, code,
	                              msg, msg_size);
}

/* Decodes value with hs; expects failure with want_code and a clean message
 * containing want_text, and *ev cleared. */
static void
expect_binary_error(const char *value, const struct hdrs *hs, const char *want_code,
                    const char *want_text)
{
	struct sl_event ev;
	char code[32], msg[256];

	memset(&ev, 0xa5, sizeof(ev));
	expect_failed(decode_binary(value, hs, &ev, code, msg, sizeof(msg)), &ev, code, msg, want_code, want_text);
}

/* A binary-mode message decodes to the same struct sl_event as the
 * structured event with the same attributes and data. */
static void
test_binary_same_as_structured(void **state)
{
	struct sl_event bin, st;
	struct hdrs hs;
	char code[32], msg[256];
	const char *data = "{\"from\":\"a\",\"to\":\"b\",\"amount\":5.0,\"n\":[1,null]}";

	(void)state;
	good_headers(&hs);
	hdr(&hs, "ce_subject", "acct-7");
	hdr(&hs, "ce_time", "2026-11-28T21:38:12.123456Z");
	hdr(&hs, "content-type", "application/json; charset=utf-8");
	hdr(&hs, "ce_traceparent", "an extension, not kept");
	if (decode_binary(data, &hs, &bin, code, msg, sizeof(msg)) != 0)
		fail_msg("decode failed: %s: %s", code, msg);
	expect_ok(GOOD_HEAD ",\"subject\":\"acct-7\",\"time\":\"2026-11-28T21:38:12.123456Z\","
	          "\"datacontenttype\":\"application/json; charset=utf-8\",\"data\":{\"from\":\"a\","
	          "\"to\":\"b\",\"amount\":5.0,\"n\":[1,null]}}",
	          &st);
	assert_string_equal(bin.id, st.id);
	assert_string_equal(bin.source, st.source);
	assert_string_equal(bin.type, st.type);
	assert_string_equal(bin.subject, st.subject);
	assert_string_equal(bin.time, st.time);
	assert_true(json_equal(bin.data, st.data));
	assert_true(json_equal(bin.root, st.root));
	assert_ptr_equal(bin.data, json_object_get(bin.root, "data"));
	sl_event_clear(&bin);
	sl_event_clear(&st);

	/* Minimal: no optional header, no content-type (JSON is assumed). */
	good_headers(&hs);
	if (decode_binary("{}", &hs, &bin, code, msg, sizeof(msg)) != 0)
		fail_msg("decode failed: %s: %s", code, msg);
	assert_string_equal(bin.id, "j-1");
	assert_null(bin.subject);
	assert_null(bin.time);
	assert_int_equal(json_object_size(bin.data), 0);
	sl_event_clear(&bin);
	/* A header without a value is an absent one. */
	hdr(&hs, "ce_subject", NULL);
	if (decode_binary("{}", &hs, &bin, code, msg, sizeof(msg)) != 0)
		fail_msg("decode failed: %s: %s", code, msg);
	assert_null(bin.subject);
	sl_event_clear(&bin);
}

/* sl_event_decode_message() takes binary mode when ce_specversion is there. */
static void
test_binary_mode_choice(void **state)
{
	struct sl_event ev;
	struct hdrs hs;
	char code[32], msg[256];
	const char *structured = GOOD_HEAD ",\"data\":{\"k\":1}}";

	(void)state;
	good_headers(&hs);
	assert_int_equal(sl_event_decode_message("{\"k\":2}", 7, hs.h, hs.n, 0, &ev, code, msg,
	                                         sizeof(msg)),
	                 0);
	assert_int_equal(json_integer_value(json_object_get(ev.data, "k")), 2);
	sl_event_clear(&ev);
	/* No ce_specversion: structured, whatever other headers say. */
	hs.n = 0;
	hdr(&hs, "ce_id", "other");
	hdr(&hs, "content-type", "text/plain");
	assert_int_equal(sl_event_decode_message(structured, strlen(structured), hs.h, hs.n, 0, &ev,
	                                         code, msg, sizeof(msg)),
	                 0);
	assert_string_equal(ev.id, "j-1");
	sl_event_clear(&ev);
	assert_int_equal(sl_event_decode_message(structured, strlen(structured), NULL, 0, 0, &ev, code,
	                                         msg, sizeof(msg)),
	                 0);
	sl_event_clear(&ev);
	/* Today's refusal of a binary-mode message read as structured. */
	good_headers(&hs);
	assert_int_equal(sl_event_decode("{\"k\":2}", 7, 0, &ev, code, msg, sizeof(msg)), -1);
	assert_string_equal(code, SL_ERR_MISSING_ATTRIBUTE);

	assert_true(sl_event_binary_header("ce_id"));
	assert_true(sl_event_binary_header("content-type"));
	assert_false(sl_event_binary_header("ce_traceparent"));
	assert_false(sl_event_binary_header("CE_ID"));
	assert_false(sl_event_binary_header("id"));
}

/* The attributes are checked as in structured mode, with the same codes. */
static void
test_binary_attribute_errors(void **state)
{
	struct hdrs hs;
	struct sl_event ev;
	char code[32], msg[256];
	static const char bad_utf8[] = "j\xff-1";
	static const char with_nul[] = { 'j', '\0', '1' };

	(void)state;
	hs.n = 0;
	hdr(&hs, "ce_id", "j-1");
	hdr(&hs, "ce_source", "shop");
	hdr(&hs, "ce_type", "t");
	expect_binary_error("{}", &hs, SL_ERR_MISSING_ATTRIBUTE,
	                    "missing required attribute \"specversion\"");
	good_headers(&hs);
	hs.h[0].value = "0.3";
	hs.h[0].len = 3;
	expect_binary_error("{}", &hs, SL_ERR_UNSUPPORTED_VERSION, "unsupported specversion \"0.3\"");
	good_headers(&hs);
	hs.h[1].value = "";
	hs.h[1].len = 0;
	expect_binary_error("{}", &hs, SL_ERR_INVALID_ATTRIBUTE,
	                    "attribute \"id\" must be a non-empty string");
	good_headers(&hs);
	hs.h[1].value = NULL;
	hs.h[1].len = 0;
	expect_binary_error("{}", &hs, SL_ERR_MISSING_ATTRIBUTE, "missing required attribute \"id\"");
	good_headers(&hs);
	hs.n = 2; /* specversion and id only */
	expect_binary_error("{}", &hs, SL_ERR_MISSING_ATTRIBUTE, "missing required attribute \"source\"");
	good_headers(&hs);
	hdr(&hs, "ce_time", "yesterday\x1b[2J");
	expect_binary_error("{}", &hs, SL_ERR_INVALID_ATTRIBUTE,
	                    "attribute \"time\" must be an RFC 3339 timestamp, not \"yesterday\\x1b[2J\"");
	good_headers(&hs);
	hdr(&hs, "content-type", "text/plain");
	expect_binary_error("hello", &hs, SL_ERR_INVALID_ATTRIBUTE,
	                    "attribute \"datacontenttype\" must be \"application/json\", not \"text/plain\"");

	/* What only headers can carry. */
	good_headers(&hs);
	hdr(&hs, "ce_id", "j-2");
	expect_binary_error("{}", &hs, SL_ERR_INVALID_ATTRIBUTE, "header \"ce_id\" appears more than once");
	good_headers(&hs);
	hs.h[1].value = bad_utf8;
	hs.h[1].len = sizeof(bad_utf8) - 1;
	expect_binary_error("{}", &hs, SL_ERR_INVALID_ATTRIBUTE, "header \"ce_id\" is not valid UTF-8");
	good_headers(&hs);
	hs.h[1].value = with_nul;
	hs.h[1].len = sizeof(with_nul);
	expect_binary_error("{}", &hs, SL_ERR_INVALID_ATTRIBUTE, "header \"ce_id\" holds a NUL byte");

	/* The size limit applies to the value. */
	good_headers(&hs);
	memset(&ev, 0, sizeof(ev));
	assert_int_equal(sl_event_decode_binary("{\"k\":12345}", 11, hs.h, hs.n, 10, &ev, code, msg,
	                                        sizeof(msg)),
	                 -1);
	assert_string_equal(code, SL_ERR_MESSAGE_TOO_LARGE);
}

/* Builds data nested `levels` objects deep: {"a":{"a":...{}...}}. */
static char *
nested_data(int levels)
{
	char *s = malloc((size_t)levels * 6 + 1), *p = s;
	int i;

	assert_non_null(s);
	for (i = 0; i < levels - 1; i++)
		p += sprintf(p, "{\"a\":");
	p += sprintf(p, "{}");
	for (i = 0; i < levels - 1; i++)
		*p++ = '}';
	*p = '\0';
	return s;
}

/* Data nested as deep as the parser takes in binary mode is one level too
 * deep in structured mode, inside the envelope: refused in both, so the
 * same event decodes the same either way. */
static void
test_binary_depth_as_structured(void **state)
{
	struct hdrs hs;
	struct sl_event ev;
	char code[32], msg[256], *data, *text;

	(void)state;
	good_headers(&hs);
	data = nested_data(JSON_PARSER_MAX_DEPTH);
	expect_binary_error(data, &hs, SL_ERR_INVALID_JSON, "nested deeper than");
	free(data);

	data = nested_data(JSON_PARSER_MAX_DEPTH - 1);
	assert_int_equal(decode_binary(data, &hs, &ev, code, msg, sizeof(msg)), 0);
	sl_event_clear(&ev);
	assert_true(asprintf(&text, "{\"specversion\":\"1.0\",\"id\":\"j-1\",\"source\":\"shop\","
	                            "\"type\":\"ledger.transfer\",\"data\":%s}", data) > 0);
	assert_int_equal(sl_event_decode(text, strlen(text), 0, &ev, code, msg, sizeof(msg)), 0);
	sl_event_clear(&ev);
	free(text);
	free(data);
}

/* The value is the data: JSON, an object, checked as structured data is. */
static void
test_binary_data_errors(void **state)
{
	struct hdrs hs;
	struct sl_event ev;
	char code[32], msg[256];

	(void)state;
	good_headers(&hs);
	expect_binary_error(NULL, &hs, SL_ERR_INVALID_DATA, "the message value is empty");
	expect_binary_error("", &hs, SL_ERR_INVALID_DATA, "the message value is empty");
	expect_binary_error("[1,2]", &hs, SL_ERR_INVALID_DATA, "must be a JSON object, not an array");
	expect_binary_error("{\"a\":", &hs, SL_ERR_INVALID_JSON, "invalid json at line 1");
	expect_binary_error("{\"a\":1,\"a\":2}", &hs, SL_ERR_INVALID_JSON, "duplicate object key \"a\"");
	expect_binary_error("{\"a\":\"\xc3\x28\"}", &hs, SL_ERR_INVALID_JSON, "invalid json");
	expect_binary_error("{\"a\":1e999}", &hs, SL_ERR_NUMBER_OUT_OF_RANGE, "out of range");
	assert_int_equal(sl_event_decode_binary("{\"a\":1}\0", 8, hs.h, hs.n, 0, &ev, code, msg,
	                                        sizeof(msg)),
	                 -1);
	assert_string_equal(code, SL_ERR_INVALID_JSON);
	assert_non_null(strstr(msg, "NUL byte at offset 7"));
	/* An explicit JSON content type is fine. */
	hdr(&hs, "content-type", "Application/JSON");
	assert_int_equal(decode_binary("{\"a\":1}", &hs, &ev, code, msg, sizeof(msg)), 0);
	sl_event_clear(&ev);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_good_event),
		cmocka_unit_test(test_binary_same_as_structured),
		cmocka_unit_test(test_binary_mode_choice),
		cmocka_unit_test(test_binary_attribute_errors),
		cmocka_unit_test(test_binary_data_errors),
		cmocka_unit_test(test_decode_minimal_and_nulls),
		cmocka_unit_test(test_decode_sql_looking_strings),
		cmocka_unit_test(test_decode_too_large),
		cmocka_unit_test(test_decode_empty),
		cmocka_unit_test(test_decode_invalid_json),
		cmocka_unit_test(test_decode_invalid_utf8),
		cmocka_unit_test(test_decode_deep_nesting),
		cmocka_unit_test(test_binary_depth_as_structured),
		cmocka_unit_test(test_decode_number_out_of_range),
		cmocka_unit_test(test_decode_duplicate_keys),
		cmocka_unit_test(test_decode_not_an_object),
		cmocka_unit_test(test_decode_missing_attribute),
		cmocka_unit_test(test_decode_specversion),
		cmocka_unit_test(test_decode_invalid_attribute),
		cmocka_unit_test(test_decode_time),
		cmocka_unit_test(test_decode_datacontenttype),
		cmocka_unit_test(test_decode_invalid_data),
		cmocka_unit_test(test_decode_message_hygiene),
		cmocka_unit_test(test_result_succeeded_golden),
		cmocka_unit_test(test_result_rejected_failed_golden),
		cmocka_unit_test(test_result_unknown_job),
		cmocka_unit_test(test_result_invalid_utf8_message),
		cmocka_unit_test(test_result_escapes_like_jansson),
		cmocka_unit_test(test_result_output_like_jansson),
		cmocka_unit_test(test_result_round_trip),
		cmocka_unit_test(test_uuid),
		cmocka_unit_test(test_now),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
