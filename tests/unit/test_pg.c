/* test_pg.c -- unit tests for pg.c: conninfo redaction through libpq's parser
 * and connection errors that never carry a password. No server is needed:
 * the one connection attempt goes to a closed port. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "pg.h"

#define SECRET "s3cret-Zq9"

/* Redacts `conninfo` and checks the secret is gone and `want` is there. */
static int
redact_ok(const char *conninfo, const char *want)
{
	char buf[512];
	int rc = sl_pg_conninfo_redact(conninfo, buf, sizeof(buf));

	if (strstr(buf, "s3cret") != NULL || strstr(buf, "Zq9") != NULL)
		fail_msg("\"%s\" redacted to \"%s\"", conninfo, buf);
	if (strstr(buf, want) == NULL)
		fail_msg("\"%s\" redacted to \"%s\", without \"%s\"", conninfo, buf, want);
	return rc;
}

static void
test_redact_forms(void **state)
{
	(void)state;
	assert_int_equal(redact_ok("host=db password=" SECRET " user=app", "password=***"), 0);
	assert_int_equal(redact_ok("host=db password=" SECRET " user=app", "host=db"), 0);
	assert_int_equal(redact_ok("password = '" SECRET " \\' x' dbname=x", "dbname=x"), 0);
	assert_int_equal(redact_ok("postgresql://app:" SECRET "@db:5432/x", "password=***"), 0);
	assert_int_equal(redact_ok("postgresql://app@db/x?password=" SECRET, "password=***"), 0);
	assert_int_equal(redact_ok("postgres://db/x?sslmode=require&password=" SECRET, "sslmode=require"), 0);
	assert_int_equal(redact_ok("host=db\tpassword=" SECRET "\nuser=app", "user=app"), 0);
	assert_int_equal(redact_ok("host=db\npassword=" SECRET, "password=***"), 0);
	assert_int_equal(redact_ok("host=db sslpassword=" SECRET, "sslpassword=***"), 0);
	assert_int_equal(redact_ok("postgresql://db/x?sslpassword=" SECRET, "sslpassword=***"), 0);
	assert_int_equal(redact_ok("host=db application_name='a b'", "application_name='a b'"), 0);
}

static void
test_redact_empty(void **state)
{
	char buf[16] = "junk";

	(void)state;
	assert_int_equal(sl_pg_conninfo_redact("", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "");
	assert_int_equal(sl_pg_conninfo_redact(NULL, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "");
}

/* libpq's parse errors quote the offending token; the redacted error must not. */
static void
test_redact_parse_errors(void **state)
{
	(void)state;
	assert_int_equal(redact_ok("host=x password=s3cret Zq9", "invalid connection string: missing \"=\" after"), -1);
	assert_int_equal(redact_ok("host=x password='" SECRET, "invalid connection string: unterminated"), -1);
	assert_int_equal(redact_ok("postgresql://a@h/x?" SECRET, "invalid connection string"), -1);
	assert_int_equal(redact_ok("postgresql://a@h/x?password=" SECRET "%zz", "invalid percent-encoded token"), -1);
	assert_int_equal(redact_ok("postgresql://a@h/x?password=" SECRET "%00", "invalid connection string"), -1);
	assert_int_equal(redact_ok("host=x " SECRET "=1", "invalid connection option"), -1);
}

static void
test_redact_truncates(void **state)
{
	char buf[12];

	(void)state;
	sl_pg_conninfo_redact("password=" SECRET " host=a-long-host-name", buf, sizeof(buf));
	assert_int_equal(strlen(buf), sizeof(buf) - 1);
	assert_null(strstr(buf, "s3"));
}

static void
test_has_secret(void **state)
{
	(void)state;
	assert_int_equal(sl_pg_conninfo_has_secret("host=db password=x"), 1);
	assert_int_equal(sl_pg_conninfo_has_secret("postgresql://a:x@db/"), 1);
	assert_int_equal(sl_pg_conninfo_has_secret("host=db sslpassword=x"), 1);
	assert_int_equal(sl_pg_conninfo_has_secret("host=db password=''"), 0);
	assert_int_equal(sl_pg_conninfo_has_secret("host=db"), 0);
	assert_int_equal(sl_pg_conninfo_has_secret(""), 0);
}

/* The errors sl_pg_connect() returns: a parse error without its token, and a
 * connection error (host and port, never the password). */
static void
test_connect_errors(void **state)
{
	char err[512];

	(void)state;
	assert_null(sl_pg_connect("host=127.0.0.1 password=s3cret Zq9", "test", err, sizeof(err)));
	assert_null(strstr(err, "Zq9"));
	assert_non_null(strstr(err, "invalid connection string"));
	assert_null(sl_pg_connect("postgresql://app:" SECRET "@127.0.0.1:1/x?connect_timeout=2", "test", err,
	                          sizeof(err)));
	assert_null(strstr(err, "s3cret"));
	assert_non_null(strstr(err, "127.0.0.1"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_redact_forms),
		cmocka_unit_test(test_redact_empty),
		cmocka_unit_test(test_redact_parse_errors),
		cmocka_unit_test(test_redact_truncates),
		cmocka_unit_test(test_has_secret),
		cmocka_unit_test(test_connect_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
