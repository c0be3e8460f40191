/* test_text.c -- unit tests for text.c: the growing buffer, UTF-8 decoding
 * and the escaping of untrusted text for display. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "text.h"

static void
test_put(void **state)
{
	struct sl_text t = { NULL, 0, 0, 0 };
	int i;

	(void)state;
	for (i = 0; i < 1000; i++)
		sl_text_puts(&t, "abc");
	sl_text_put(&t, "xyz", 1);
	assert_int_equal(t.len, 3001);
	assert_int_equal(t.p[3000], 'x');
	assert_int_equal(t.oom, 0);
	free(t.p);
}

/* Decodes the sequence at the start of s (n bytes) and checks its length
 * and code point. */
static void
expect_seq(const char *s, size_t n, size_t want_len, unsigned want_cp)
{
	unsigned cp = 12345;

	assert_int_equal(sl_text_utf8_seq(s, n, &cp), want_len);
	assert_int_equal(cp, want_cp);
}

static void
test_utf8_seq(void **state)
{
	(void)state;
	expect_seq("a", 1, 1, 'a');
	expect_seq("\0x", 2, 1, 0);
	expect_seq("\xc2\x80", 2, 2, 0x80);
	expect_seq("\xdf\xbf", 2, 2, 0x7ff);
	expect_seq("\xe0\xa0\x80", 3, 3, 0x800);
	expect_seq("\xef\xbf\xbf", 3, 3, 0xffff);
	expect_seq("\xf0\x90\x80\x80", 4, 4, 0x10000);
	expect_seq("\xf4\x8f\xbf\xbf", 4, 4, 0x10ffff);
	expect_seq("\xc3\xa9z", 3, 2, 0xe9);
	/* None: continuation, overlong, surrogate, past U+10FFFF, bytes that
	 * never lead, a bad continuation, and a sequence cut by n. */
	expect_seq("\x80", 1, 0, 0);
	expect_seq("\xc0\x80", 2, 0, 0);
	expect_seq("\xc1\xbf", 2, 0, 0);
	expect_seq("\xe0\x9f\xbf", 3, 0, 0);
	expect_seq("\xf0\x8f\xbf\xbf", 4, 0, 0);
	expect_seq("\xed\xa0\x80", 3, 0, 0);
	expect_seq("\xed\xbf\xbf", 3, 0, 0);
	expect_seq("\xf4\x90\x80\x80", 4, 0, 0);
	expect_seq("\xf5\x80\x80\x80", 4, 0, 0);
	expect_seq("\xff", 1, 0, 0);
	expect_seq("\xc3\x28", 2, 0, 0);
	expect_seq("\xe2\x82\xac", 2, 0, 0);
}

/* Escapes s (len bytes) into a buffer of `size` and checks the result. */
static void
expect(const char *s, size_t len, size_t size, const char *want, size_t want_used)
{
	char out[256];
	size_t used;

	assert_true(size <= sizeof(out));
	used = sl_text_escape_untrusted(s, len, out, size);
	assert_string_equal(out, want);
	assert_int_equal(used, want_used);
}

static void
test_escape(void **state)
{
	(void)state;
	expect("ledger.open", 11, 64, "ledger.open", 11);
	expect("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14, 64, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14);
	expect("\x1b[2Jx\n\t\x7f", 8, 64, "\\x1B[2Jx\\x0A\\x09\\x7F", 8);
	expect("a\\x41", 5, 64, "a\\\\x41", 5);
	/* Invalid: a lone continuation byte, a truncated sequence, an overlong
	 * '/', a surrogate, past U+10FFFF, and a C1 control (CSI). */
	expect("\x80", 1, 64, "\\x80", 1);
	expect("x\xc3", 2, 64, "x\\xC3", 2);
	expect("\xc0\xaf", 2, 64, "\\xC0\\xAF", 2);
	expect("\xed\xa0\x80", 3, 64, "\\xED\\xA0\\x80", 3);
	expect("\xf4\x90\x80\x80", 4, 64, "\\xF4\\x90\\x80\\x80", 4);
	expect("\xc2\x9b", 2, 64, "\\xC2\\x9B", 2);
	expect("\xe2\x80\xae", 3, 64, "\\xE2\\x80\\xAE", 3); /* right-to-left override */
	expect("a\0b", 3, 64, "a\\x00b", 3);
}

static void
test_escape_never_cuts(void **state)
{
	(void)state;
	/* "é" is two bytes: with the NUL, 8 bytes hold 3 of them, not 3.5. */
	expect("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 10, 9, "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 8);
	expect("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 10, 8, "\xc3\xa9\xc3\xa9\xc3\xa9", 6);
	/* Nor an escape. */
	expect("ab\x01", 3, 6, "ab", 2);
	expect("ab\x01", 3, 7, "ab\\x01", 3);
	expect("abc", 3, 1, "", 0);
	assert_int_equal(sl_text_escape_untrusted("abc", 3, NULL, 0), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put),
		cmocka_unit_test(test_utf8_seq),
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_escape_never_cuts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
