/* test_schema.c -- unit tests for schema.c: what errors say, numbers, regexes,
 * references, loading, recursion limits, concurrent validation and the
 * schemas shipped in schemas/. The official suite is test_schema_suite.c.
 * Runs from the repository root (make unit), where schemas/ is.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "schema.h"

/* Compiles a schema from text; fails the test on error. */
static sl_schema_t *
compile_text(const char *text)
{
	char err[512];
	json_error_t jerr;
	json_t *doc = json_loads(text, JSON_DECODE_ANY, &jerr);
	sl_schema_t *s;

	if (doc == NULL)
		fail_msg("bad test schema: %s", jerr.text);
	s = sl_schema_compile(doc, NULL, NULL, 0, err, sizeof(err));
	json_decref(doc); /* the schema keeps its own reference */
	if (s == NULL)
		fail_msg("could not compile: %s", err);
	return s;
}

/* Returns the compile error for text (the test fails if it compiles). */
static void
compile_error(const char *text, char *err, size_t err_size)
{
	json_t *doc = json_loads(text, JSON_DECODE_ANY, NULL);
	sl_schema_t *s;

	assert_non_null(doc);
	s = sl_schema_compile(doc, NULL, NULL, 0, err, err_size);
	json_decref(doc);
	if (s != NULL) {
		sl_schema_destroy(s);
		fail_msg("schema compiled but should not: %s", text);
	}
}

/* Validates instance text; returns sl_schema_validate's result. */
static int
check(const sl_schema_t *s, const char *instance, struct sl_schema_error *errs, size_t max, size_t *n)
{
	json_t *doc = json_loads(instance, JSON_DECODE_ANY, NULL);
	int rc;

	assert_non_null(doc);
	rc = sl_schema_validate(s, doc, errs, max, n);
	json_decref(doc);
	return rc;
}

static const char transfer_schema[] =
	"{\"type\":\"object\",\"properties\":{\"from\":{\"type\":\"string\",\"minLength\":1},"
	"\"to\":{\"type\":\"string\"},\"amount\":{\"type\":\"integer\",\"minimum\":1,"
	"\"maximum\":9007199254740991}},\"required\":[\"from\",\"to\",\"amount\"],\"additionalProperties\":false}";

static void
test_error_names_location_and_reason(void **state)
{
	sl_schema_t *s = compile_text(transfer_schema);
	struct sl_schema_error errs[8];
	char line[512];
	size_t n = 99;

	(void)state;
	assert_int_equal(check(s, "{\"from\":\"a\",\"to\":\"b\",\"amount\":5}", errs, 8, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(check(s, "{\"from\":\"a\",\"to\":\"b\",\"amount\":0}", errs, 8, &n), 1);
	assert_int_equal(n, 1);
	assert_string_equal(errs[0].instance_path, "/amount");
	assert_string_equal(errs[0].schema_path, "#/properties/amount/minimum");
	assert_string_equal(errs[0].message, "must be >= 1");
	sl_schema_errors_format(errs, n, line, sizeof(line));
	assert_string_equal(line, "at /amount: must be >= 1 (schema #/properties/amount/minimum)");
	sl_schema_destroy(s);
}

static void
test_errors_collected_and_bounded(void **state)
{
	sl_schema_t *s = compile_text(transfer_schema);
	struct sl_schema_error errs[8];
	char line[512], tiny[16];
	size_t n;

	(void)state;
	assert_int_equal(check(s, "{\"from\":\"\",\"amount\":\"x\",\"extra\":1}", errs, 8, &n), 1);
	assert_int_equal(n, 4);
	sl_schema_errors_format(errs, n, line, sizeof(line));
	assert_non_null(strstr(line, "at root: must have required property \"to\" (schema #/required)"));
	assert_non_null(strstr(line, "at /from: must be at least 1 characters long (schema #/properties/from/minLength)"));
	assert_non_null(strstr(line, "at /amount: must be of type integer (schema #/properties/amount/type)"));
	assert_non_null(strstr(line, "at root: must not have additional property \"extra\""));
	/* max_errs bounds what is written, not the verdict. */
	assert_int_equal(check(s, "{\"from\":\"\",\"amount\":\"x\",\"extra\":1}", errs, 1, &n), 1);
	assert_int_equal(n, 1);
	assert_int_equal(check(s, "{\"from\":\"\",\"amount\":\"x\",\"extra\":1}", NULL, 0, NULL), 1);
	sl_schema_errors_format(errs, 1, tiny, sizeof(tiny));
	assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
	sl_schema_destroy(s);
}

static void
test_instance_path_escaping(void **state)
{
	sl_schema_t *s = compile_text("{\"additionalProperties\":{\"items\":{\"type\":\"string\"}}}");
	struct sl_schema_error errs[2];
	size_t n;

	(void)state;
	assert_int_equal(check(s, "{\"a/b~c\":[\"x\",3]}", errs, 2, &n), 1);
	assert_int_equal(n, 1);
	assert_string_equal(errs[0].instance_path, "/a~1b~0c/1");
	assert_string_equal(errs[0].schema_path, "#/additionalProperties/items/type");
	sl_schema_destroy(s);
}

static void
test_numbers(void **state)
{
	sl_schema_t *s;

	(void)state;
	s = compile_text("{\"maximum\":9007199254740992.0}");
	assert_int_equal(check(s, "9007199254740992", NULL, 0, NULL), 0);
	assert_int_equal(check(s, "9007199254740993", NULL, 0, NULL), 1); /* no rounding to double */
	sl_schema_destroy(s);
	s = compile_text("{\"multipleOf\":0.0001}");
	assert_int_equal(check(s, "0.0075", NULL, 0, NULL), 0);
	assert_int_equal(check(s, "0.00751", NULL, 0, NULL), 1);
	assert_int_equal(check(s, "12", NULL, 0, NULL), 0);
	sl_schema_destroy(s);
	s = compile_text("{\"multipleOf\":0.123456789}");
	assert_int_equal(check(s, "1e308", NULL, 0, NULL), 1);
	sl_schema_destroy(s);
	s = compile_text("{\"multipleOf\":3}");
	assert_int_equal(check(s, "-9223372036854775806", NULL, 0, NULL), 0);
	assert_int_equal(check(s, "4.5", NULL, 0, NULL), 1);
	assert_int_equal(check(s, "9.0", NULL, 0, NULL), 0);
	sl_schema_destroy(s);
	s = compile_text("{\"type\":\"integer\",\"enum\":[1,[2],{\"a\":3}]}");
	assert_int_equal(check(s, "1.0", NULL, 0, NULL), 0);
	assert_int_equal(check(s, "[2.0]", NULL, 0, NULL), 1); /* in enum, but not an integer */
	sl_schema_destroy(s);
	s = compile_text("{\"const\":{\"a\":[1,{\"b\":2.0}],\"c\":null}}");
	assert_int_equal(check(s, "{\"c\":null,\"a\":[1.0,{\"b\":2}]}", NULL, 0, NULL), 0);
	assert_int_equal(check(s, "{\"c\":false,\"a\":[1.0,{\"b\":2}]}", NULL, 0, NULL), 1);
	sl_schema_destroy(s);
}

static void
test_ecma_regex(void **state)
{
	sl_schema_t *s;
	char err[256];

	(void)state;
	s = compile_text("{\"pattern\":\"^\\\\d+$\"}");
	assert_int_equal(check(s, "\"123\"", NULL, 0, NULL), 0);
	assert_int_equal(check(s, "\"\\u0663\"", NULL, 0, NULL), 1); /* ARABIC-INDIC DIGIT THREE */
	assert_int_equal(check(s, "\"12\\n\"", NULL, 0, NULL), 1);   /* $ is the very end */
	sl_schema_destroy(s);
	s = compile_text("{\"pattern\":\"^\\\\s\\\\w\\\\u00e9.$\"}");
	assert_int_equal(check(s, "\"\\u00a0a\\u00e9\\u00e9\"", NULL, 0, NULL), 0);
	assert_int_equal(check(s, "\" \\u00e9\\u00e9x\"", NULL, 0, NULL), 1); /* \w is ASCII */
	sl_schema_destroy(s);
	compile_error("{\"pattern\":\"abc\\\\Z\"}", err, sizeof(err));
	assert_non_null(strstr(err, "#/pattern: invalid regular expression"));
	compile_error("{\"patternProperties\":{\"(\":{}}}", err, sizeof(err));
	assert_non_null(strstr(err, "#/patternProperties/(: invalid regular expression"));
	s = compile_text("{\"format\":\"regex\"}");
	assert_int_equal(check(s, "\"^[a-z]+\\\\d$\"", NULL, 0, NULL), 0);
	assert_int_equal(check(s, "\"\\\\A\"", NULL, 0, NULL), 1);
	sl_schema_destroy(s);
}

static void
test_formats(void **state)
{
	sl_schema_t *s = compile_text("{\"properties\":{\"t\":{\"format\":\"date-time\"},\"u\":{\"format\":\"uuid\"},"
	                              "\"h\":{\"format\":\"hostname\"},\"x\":{\"format\":\"no-such-format\"}}}");
	struct sl_schema_error errs[4];
	size_t n;

	(void)state;
	assert_int_equal(check(s, "{\"t\":\"2024-02-29T23:59:60Z\",\"u\":\"123e4567-e89b-12d3-a456-426614174000\","
	                          "\"h\":\"db-1.example.com\",\"x\":\"anything\"}", NULL, 0, NULL), 0);
	assert_int_equal(check(s, "{\"t\":\"2023-02-29T10:00:00Z\",\"u\":\"123e4567e89b12d3a456426614174000\"}", errs, 4,
	                       &n), 1);
	assert_int_equal(n, 2);
	assert_string_equal(errs[0].message, "must be a valid date-time");
	assert_string_equal(errs[1].schema_path, "#/properties/u/format");
	sl_schema_destroy(s);
}

static void
test_refs_and_ids(void **state)
{
	sl_schema_t *s;
	struct sl_schema_error errs[2];
	size_t n;
	char err[512];

	(void)state;
	s = compile_text("{\"$id\":\"http://x.test/root.json\",\"definitions\":{"
	                 "\"a\":{\"$id\":\"#thing\",\"type\":\"integer\"},"
	                 "\"b~/c\":{\"$id\":\"sub/b.json\",\"items\":{\"$ref\":\"../root.json#thing\"}}},"
	                 "\"properties\":{\"p\":{\"$ref\":\"sub/b.json\"},\"q\":{\"$ref\":\"#/definitions/b~0~1c\"},"
	                 "\"r\":{\"$ref\":\"#/definitions/b%7E0~1c/items\"}}}");
	assert_int_equal(check(s, "{\"p\":[1,2],\"q\":[3],\"r\":4}", NULL, 0, NULL), 0);
	assert_int_equal(check(s, "{\"q\":[3,\"x\"]}", errs, 2, &n), 1);
	assert_string_equal(errs[0].instance_path, "/q/1");
	assert_string_equal(errs[0].schema_path, "#/definitions/a/type");
	sl_schema_destroy(s);
	/* The draft-07 meta-schema is built in. */
	s = compile_text("{\"$ref\":\"http://json-schema.org/draft-07/schema#\"}");
	assert_int_equal(check(s, "{\"minLength\":1}", NULL, 0, NULL), 0);
	assert_int_equal(check(s, "{\"minLength\":-1}", errs, 2, &n), 1);
	assert_string_equal(errs[0].schema_path, "http://json-schema.org/draft-07/schema#/definitions/nonNegativeInteger/minimum");
	sl_schema_destroy(s);
	compile_error("{\"properties\":{\"a\":{\"$ref\":\"#/definitions/missing\"}}}", err, sizeof(err));
	assert_string_equal(err, "#/properties/a: could not resolve $ref \"#/definitions/missing\": "
	                         "\"#/definitions/missing\" does not exist");
	compile_error("{\"$ref\":\"http://elsewhere.test/x.json\"}", err, sizeof(err));
	assert_non_null(strstr(err, "no document \"http://elsewhere.test/x.json\""));
}

static void
test_remote_ref_map(void **state)
{
	char dir[] = "/tmp/test_schema_XXXXXX", path[256], err[512];
	struct sl_schema_ref ref;
	sl_schema_t *s;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/money.json", dir);
	assert_non_null(f = fopen(path, "w"));
	fputs("{\"definitions\":{\"cents\":{\"type\":\"integer\",\"minimum\":0}}}", f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/main.json", dir);
	assert_non_null(f = fopen(path, "w"));
	fputs("{\"$id\":\"https://schemas.test/main.json\",\"items\":{\"$ref\":\"money.json#/definitions/cents\"}}", f);
	fclose(f);
	ref.prefix = "https://schemas.test/";
	ref.dir = dir;
	s = sl_schema_load_file(path, &ref, 1, err, sizeof(err));
	if (s == NULL)
		fail_msg("%s", err);
	assert_int_equal(check(s, "[0,5]", NULL, 0, NULL), 0);
	assert_int_equal(check(s, "[0,-5]", NULL, 0, NULL), 1);
	sl_schema_destroy(s);
	/* Without the map the reference cannot resolve. */
	assert_null(sl_schema_load_file(path, NULL, 0, err, sizeof(err)));
	assert_int_equal(strncmp(err, path, strlen(path)), 0);
	unlink(path);
	snprintf(path, sizeof(path), "%s/money.json", dir);
	unlink(path);
	rmdir(dir);
}

static void
test_load_errors(void **state)
{
	char dir[] = "/tmp/test_schema_XXXXXX", path[256], err[512];
	FILE *f;

	(void)state;
	assert_null(sl_schema_load_file("/nonexistent/x.json", NULL, 0, err, sizeof(err)));
	assert_int_equal(strncmp(err, "/nonexistent/x.json: ", 21), 0);
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/bad.json", dir);
	assert_non_null(f = fopen(path, "w"));
	fputs("{\n\"type\": \"object\",\n}\n", f);
	fclose(f);
	assert_null(sl_schema_load_file(path, NULL, 0, err, sizeof(err)));
	assert_non_null(strstr(err, "bad.json:3: "));
	assert_non_null(f = fopen(path, "w"));
	fputs("{\"properties\":{\"n\":{\"minLength\":\"3\"}}}", f);
	fclose(f);
	assert_null(sl_schema_load_file(path, NULL, 0, err, sizeof(err)));
	assert_non_null(strstr(err, "bad.json: #/properties/n/minLength: must be a non-negative integer"));
	assert_non_null(f = fopen(path, "w"));
	fputs("[1]", f);
	fclose(f);
	assert_null(sl_schema_load_file(path, NULL, 0, err, sizeof(err)));
	assert_non_null(strstr(err, "bad.json: #: a schema must be an object or a boolean"));
	unlink(path);
	rmdir(dir);
	sl_schema_destroy(NULL);
}

static void
test_ref_loop_bounded(void **state)
{
	static const char *const loops[] = {
		"{\"$ref\":\"#\"}",
		"{\"definitions\":{\"a\":{\"$ref\":\"#/definitions/b\"},\"b\":{\"allOf\":[{\"$ref\":\"#/definitions/a\"}]}},"
		"\"$ref\":\"#/definitions/a\"}",
		"{\"anyOf\":[{\"not\":{\"$ref\":\"#\"}}]}",
	};
	struct sl_schema_error errs[2];
	sl_schema_t *s;
	size_t i, n;

	(void)state;
	for (i = 0; i < sizeof(loops) / sizeof(loops[0]); i++) {
		s = compile_text(loops[i]);
		assert_int_equal(check(s, "{}", errs, 2, &n), -1);
		assert_int_equal(n, 1);
		assert_non_null(strstr(errs[0].message, "schema evaluation exceeds depth"));
		assert_int_equal(check(s, "{}", NULL, 0, NULL), -1);
		sl_schema_destroy(s);
	}
	/* Recursion that follows the instance is fine. */
	s = compile_text("{\"items\":{\"$ref\":\"#\"},\"type\":\"array\"}");
	assert_int_equal(check(s, "[[[[]]],[]]", NULL, 0, NULL), 0);
	assert_int_equal(check(s, "[[[[1]]]]", errs, 2, &n), 1);
	assert_string_equal(errs[0].instance_path, "/0/0/0/0");
	sl_schema_destroy(s);
}

/* Returns 1 when s is valid UTF-8 (jansson's check). */
static int
valid_utf8(const char *s)
{
	json_t *v = json_string(s);

	json_decref(v);
	return v != NULL;
}

/* Keys come from the instance: a message shows them escaped and never cut
 * inside a character. */
static void
test_messages_escape_keys(void **state)
{
	struct sl_schema_error errs[4];
	char inst[1200];
	sl_schema_t *s;
	size_t n, off = 0;
	int i;

	(void)state;
	s = compile_text("{\"additionalProperties\":false}");
	assert_int_equal(check(s, "{\"\\u001b[2Jx\":1}", errs, 4, &n), 1);
	assert_string_equal(errs[0].message, "must not have additional property \"\\x1B[2Jx\"");
	assert_string_equal(errs[0].instance_path, "");
	off += (size_t)snprintf(inst, sizeof(inst), "{\"");
	for (i = 0; i < 300; i++)
		off += (size_t)snprintf(inst + off, sizeof(inst) - off, "\xc3\xa9");
	snprintf(inst + off, sizeof(inst) - off, "\":1}");
	assert_int_equal(check(s, inst, errs, 4, &n), 1);
	assert_true(valid_utf8(errs[0].message));
	assert_non_null(strstr(errs[0].message, "...\""));
	sl_schema_destroy(s);
	s = compile_text("{\"propertyNames\":{\"maxLength\":1},\"properties\":{\"\\u0007b\":{\"type\":\"string\"}}}");
	assert_int_equal(check(s, "{\"\\u0007b\":1}", errs, 4, &n), 1);
	assert_string_equal(errs[0].message, "property name \"\\x07b\" does not match propertyNames");
	assert_string_equal(errs[1].instance_path, "/\\x07b");
	/* A long path is cut at a character boundary too. */
	s = (sl_schema_destroy(s), compile_text("{\"additionalProperties\":{\"type\":\"string\"}}"));
	assert_int_equal(check(s, inst, errs, 4, &n), 1);
	assert_true(valid_utf8(errs[0].instance_path));
	sl_schema_destroy(s);
}

/* Builds 40 nested levels of `kw` over two $refs to the next level, ending
 * in `last`: 2^40 evaluations without a bound on the work. */
static sl_schema_t *
compile_chain(const char *kw, const char *last)
{
	char *text = malloc(16384);
	size_t off = 0;
	sl_schema_t *s;
	int i;

	assert_non_null(text);
	off += (size_t)snprintf(text + off, 16384 - off, "{\"$ref\":\"#/definitions/d0\",\"definitions\":{");
	for (i = 0; i < 40; i++)
		off += (size_t)snprintf(text + off, 16384 - off,
		                        "\"d%d\":{\"%s\":[{\"$ref\":\"#/definitions/d%d\"},{\"$ref\":\"#/definitions/d%d\"}]},",
		                        i, kw, i + 1, i + 1);
	snprintf(text + off, 16384 - off, "\"d40\":%s}}", last);
	s = compile_text(text);
	free(text);
	return s;
}

static void
test_work_bounded(void **state)
{
	struct sl_schema_error errs[2];
	sl_schema_t *s;
	size_t n;

	(void)state;
	s = compile_chain("anyOf", "{\"type\":\"string\"}");
	assert_int_equal(check(s, "1", errs, 2, &n), -1);
	assert_int_equal(n, 1);
	assert_string_equal(errs[0].message, "schema too complex to evaluate (more than 10000000 steps)");
	assert_int_equal(check(s, "1", NULL, 0, NULL), -1);
	/* The first branch matching ends anyOf early: no blow-up. */
	assert_int_equal(check(s, "\"x\"", NULL, 0, NULL), 0);
	sl_schema_destroy(s);
	s = compile_chain("allOf", "true");
	assert_int_equal(check(s, "1", errs, 2, &n), -1);
	assert_non_null(strstr(errs[0].message, "too complex"));
	sl_schema_destroy(s);
}

struct worker_arg {
	const sl_schema_t *s;
	json_t *good, *bad;
	int mismatches;
};

static void *
worker(void *p)
{
	struct worker_arg *a = p;
	struct sl_schema_error errs[4];
	size_t n;
	int i;

	for (i = 0; i < 3000; i++) {
		if (sl_schema_validate(a->s, a->good, errs, 4, &n) != 0)
			a->mismatches++;
		if (sl_schema_validate(a->s, a->bad, errs, 4, &n) != 1 || n != 2 ||
		    strcmp(errs[0].instance_path, "/name") != 0)
			a->mismatches++;
	}
	return NULL;
}

static void
test_concurrent_validation(void **state)
{
	sl_schema_t *s = compile_text("{\"properties\":{\"name\":{\"pattern\":\"^[a-z]+\\\\d*$\"},"
	                              "\"tags\":{\"items\":{\"format\":\"hostname\"},\"uniqueItems\":true}},"
	                              "\"patternProperties\":{\"^x-\":{\"type\":\"string\"}}}");
	struct worker_arg args[4];
	pthread_t th[4];
	int i;

	(void)state;
	for (i = 0; i < 4; i++) {
		args[i].s = s;
		args[i].good = json_loads("{\"name\":\"abc12\",\"tags\":[\"a.b\",\"c\"],\"x-y\":\"z\"}", 0, NULL);
		args[i].bad = json_loads("{\"name\":\"ABC\",\"tags\":[\"a\"],\"x-y\":1}", 0, NULL);
		args[i].mismatches = 0;
		assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(args[i].mismatches, 0);
		json_decref(args[i].good);
		json_decref(args[i].bad);
	}
	sl_schema_destroy(s);
}

static void
test_shipped_schemas(void **state)
{
	static const char *const files[] = {
		"schemas/jobs/ledger.open.json",
		"schemas/jobs/ledger.transfer.json",
		"schemas/events/job.json",
		"schemas/events/result.json",
	};
	static const char *const cases[][2] = {
		{ "{\"account\":\"alice\",\"balance\":100}", "{\"account\":\"\",\"balance\":-1}" },
		{ "{\"from\":\"a\",\"to\":\"b\",\"amount\":9007199254740991}", "{\"from\":\"a\",\"to\":\"b\",\"amount\":0}" },
		{ "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/t\",\"type\":\"ledger.open\",\"time\":\"2024-01-01T00:00:00Z\","
		  "\"data\":{}}",
		  "{\"specversion\":\"0.3\",\"id\":\"\",\"source\":\"/t\",\"type\":\"ledger.open\",\"data\":{}}" },
		{ "{\"specversion\":\"1.0\",\"id\":\"r\",\"source\":\"sluice\",\"type\":\"ledger.open.result\",\"subject\":\"1\","
		  "\"time\":\"2024-01-01T00:00:00Z\",\"datacontenttype\":\"application/json\",\"data\":{\"status\":\"rejected\","
		  "\"id\":\"1\",\"source\":\"/t\",\"type\":\"ledger.open\",\"error\":{\"code\":\"insufficient_funds\","
		  "\"message\":\"no\"}}}",
		  "{\"specversion\":\"1.0\",\"id\":\"r\",\"source\":\"sluice\",\"type\":\"ledger.open.result\",\"subject\":\"1\","
		  "\"time\":\"2024-01-01T00:00:00Z\",\"datacontenttype\":\"application/json\",\"data\":{\"status\":\"succeeded\","
		  "\"id\":\"1\",\"source\":\"/t\",\"type\":\"ledger.open\",\"error\":{\"code\":\"x\",\"message\":\"y\"}}}" },
	};
	char err[512];
	sl_schema_t *s;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		if ((s = sl_schema_load_file(files[i], NULL, 0, err, sizeof(err))) == NULL)
			fail_msg("%s", err);
		if (check(s, cases[i][0], NULL, 0, NULL) != 0)
			fail_msg("%s: valid example rejected", files[i]);
		if (check(s, cases[i][1], NULL, 0, NULL) != 1)
			fail_msg("%s: invalid example accepted", files[i]);
		sl_schema_destroy(s);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_error_names_location_and_reason),
		cmocka_unit_test(test_errors_collected_and_bounded),
		cmocka_unit_test(test_instance_path_escaping),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_ecma_regex),
		cmocka_unit_test(test_formats),
		cmocka_unit_test(test_refs_and_ids),
		cmocka_unit_test(test_remote_ref_map),
		cmocka_unit_test(test_load_errors),
		cmocka_unit_test(test_ref_loop_bounded),
		cmocka_unit_test(test_work_bounded),
		cmocka_unit_test(test_messages_escape_keys),
		cmocka_unit_test(test_concurrent_validation),
		cmocka_unit_test(test_shipped_schemas),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
