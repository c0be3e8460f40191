/* test_html.c -- unit tests for html.c: untrusted text in a page, JSON in a
 * script, query values in a URL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "html.h"

/* Escapes n bytes of in as HTML text and compares with want. */
static void
expect_text(const char *in, size_t n, const char *want)
{
	struct sl_text t = { NULL, 0, 0, 0 };

	sl_html_text(&t, in, n);
	assert_int_equal(t.oom, 0);
	assert_string_equal(t.p ? t.p : "", want);
	free(t.p);
}

static void
test_text_specials(void **state)
{
	(void)state;
	expect_text("plain", 5, "plain");
	expect_text("", 0, "");
	expect_text("<script>alert(1)</script>", 25, "&lt;script&gt;alert(1)&lt;/script&gt;");
	expect_text("a&b\"c'd", 7, "a&amp;b&quot;c&#39;d");
	expect_text("\" onmouseover='x'", 17, "&quot; onmouseover=&#39;x&#39;");
	expect_text("&amp;", 5, "&amp;amp;");
}

static void
test_text_controls(void **state)
{
	(void)state;
	/* An ANSI escape sequence is shown, not obeyed. */
	expect_text("\x1b[31mred\x1b[0m", 12, "\\x1B[31mred\\x1B[0m");
	expect_text("a\0b", 3, "a\\x00b");
	expect_text("tab\tnl\ncr\r", 10, "tab\tnl\ncr\\x0D");
	expect_text("\x7f", 1, "\\x7F");
	/* Valid UTF-8 stays; C1 and bidi overrides do not. */
	expect_text("caf\xc3\xa9", 5, "caf\xc3\xa9");
	expect_text("\xc2\x85", 2, "\\xC2\\x85");
	expect_text("\xe2\x80\xae" "abc", 6, "\\xE2\\x80\\xAEabc");
	/* Invalid UTF-8, per byte; a truncated sequence at the end too. */
	expect_text("\xff<", 2, "\\xFF&lt;");
	expect_text("x\xe2\x80", 3, "x\\xE2\\x80");
}

static void
test_texts_null(void **state)
{
	struct sl_text t = { NULL, 0, 0, 0 };

	(void)state;
	sl_html_texts(&t, NULL);
	assert_null(t.p);
	sl_html_texts(&t, "<b>");
	assert_string_equal(t.p, "&lt;b&gt;");
	free(t.p);
}

static void
expect_json(const char *in, const char *want)
{
	struct sl_text t = { NULL, 0, 0, 0 };

	sl_html_script_json(&t, in, strlen(in));
	assert_string_equal(t.p ? t.p : "", want);
	free(t.p);
}

static void
test_script_json(void **state)
{
	(void)state;
	expect_json("{\"a\":1}", "{\"a\":1}");
	expect_json("{\"id\":\"</script><script>alert(1)</script>\"}",
	            "{\"id\":\"\\u003c/script\\u003e\\u003cscript\\u003ealert(1)\\u003c/script\\u003e\"}");
	expect_json("[\"<!--\",\"a&b\"]", "[\"\\u003c!--\",\"a\\u0026b\"]");
	expect_json("\"\xe2\x80\xa8|\xe2\x80\xa9|\xe2\x80\xa6\"", "\"\\u2028|\\u2029|\xe2\x80\xa6\"");
	expect_json("", "");
}

static void
test_url(void **state)
{
	struct sl_text t = { NULL, 0, 0, 0 };

	(void)state;
	sl_html_url(&t, "a b&c=<d>/\xc3\xa9-_.~");
	assert_string_equal(t.p, "a%20b%26c%3D%3Cd%3E%2F%C3%A9-_.~");
	free(t.p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text_specials),
		cmocka_unit_test(test_text_controls),
		cmocka_unit_test(test_texts_null),
		cmocka_unit_test(test_script_json),
		cmocka_unit_test(test_url),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
