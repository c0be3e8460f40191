/* test_schema_suite.c -- the official JSON Schema Test Suite, draft-07, against schema.c.
 *
 * One cmocka test per suite file. The required files (every tests/draft7/NAME.json)
 * and the optional format files for the formats sluice relies on must pass
 * completely; the other optional files run and are counted, never failed.
 * http://localhost:1234/ is mapped to the suite's remotes/ folder, as the
 * suite expects. The suite comes from Debian's json-schema-test-suite package
 * (tests/deps installs it); SLUICE_JSON_SCHEMA_SUITE overrides its location.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "schema.h"

#define DEFAULT_SUITE "/usr/share/json-schema-test-suite"

/* Formats whose optional files must pass: the ones schema.h promises. */
static const char *const required_formats[] = {
	"date-time", "date", "time", "email", "hostname", "ipv4", "ipv6", "uri", "uri-reference", "uuid", "regex",
};

enum kind { REQUIRED, FORMAT, OPTIONAL };

struct suite_file {
	char path[1024];
	char name[128];
	enum kind kind;
};

static struct {
	size_t passed, total;
} counts[3];

static char remotes[1024];

/* Reads a suite file. Integers beyond 64 bits (optional/bignum.json) do not
 * decode in jansson; such a file is read with JSON_DECODE_INT_AS_REAL. */
static json_t *
load(const char *path)
{
	json_error_t jerr;
	json_t *doc = json_load_file(path, 0, &jerr);

	if (doc == NULL)
		doc = json_load_file(path, JSON_DECODE_INT_AS_REAL, &jerr);
	if (doc == NULL)
		print_error("%s: %s\n", path, jerr.text);
	return doc;
}

static void
run_file(void **state)
{
	const struct suite_file *f = *state;
	struct sl_schema_ref ref = { "http://localhost:1234/", remotes };
	struct sl_schema_error errs[4];
	size_t gi, ti, n_errs, passed = 0, total = 0;
	json_t *doc, *group, *test;
	char err[512];

	assert_non_null(doc = load(f->path));
	json_array_foreach(doc, gi, group) {
		const char *gdesc = json_string_value(json_object_get(group, "description"));
		json_t *tests = json_object_get(group, "tests");
		sl_schema_t *s = sl_schema_compile(json_object_get(group, "schema"), NULL, &ref, 1, err, sizeof(err));

		if (s == NULL)
			print_message("%s: \"%s\": could not compile: %s\n", f->name, gdesc, err);
		json_array_foreach(tests, ti, test) {
			int want = json_is_true(json_object_get(test, "valid")) ? 0 : 1, got = -2;

			total++;
			if (s != NULL)
				got = sl_schema_validate(s, json_object_get(test, "data"), errs, 4, &n_errs);
			if (got == want) {
				passed++;
				continue;
			}
			print_message("%s: \"%s\" / \"%s\": expected %s, got %d%s%s\n", f->name, gdesc,
			              json_string_value(json_object_get(test, "description")), want ? "invalid" : "valid",
			              got, got == -1 ? ": " : "", got == -1 ? errs[0].message : "");
		}
		sl_schema_destroy(s);
	}
	json_decref(doc);
	counts[f->kind].passed += passed;
	counts[f->kind].total += total;
	if (f->kind == OPTIONAL && passed != total)
		print_message("%s: %zu/%zu passed (optional, not a failure)\n", f->name, passed, total);
	if (f->kind != OPTIONAL)
		assert_int_equal(passed, total);
}

static int
is_required_format(const char *file)
{
	size_t i, n;

	for (i = 0; i < sizeof(required_formats) / sizeof(required_formats[0]); i++) {
		n = strlen(required_formats[i]);
		if (strncmp(file, required_formats[i], n) == 0 && strcmp(file + n, ".json") == 0)
			return 1;
	}
	return 0;
}

/* Appends the *.json files of dir to files. */
static size_t
list_dir(const char *dir, const char *prefix, enum kind kind, struct suite_file *files, size_t n, size_t max)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	size_t len;

	if (d == NULL)
		return n;
	while ((de = readdir(d)) != NULL && n < max) {
		len = strlen(de->d_name);
		if (len < 6 || strcmp(de->d_name + len - 5, ".json") != 0)
			continue;
		snprintf(files[n].path, sizeof(files[n].path), "%s/%s", dir, de->d_name);
		snprintf(files[n].name, sizeof(files[n].name), "%s%s", prefix, de->d_name);
		files[n].kind = kind == FORMAT && !is_required_format(de->d_name) ? OPTIONAL : kind;
		n++;
	}
	closedir(d);
	return n;
}

static int
by_name(const void *a, const void *b)
{
	return strcmp(((const struct suite_file *)a)->name, ((const struct suite_file *)b)->name);
}

int
main(void)
{
	static struct suite_file files[256];
	static struct CMUnitTest tests[256];
	const char *root = getenv("SLUICE_JSON_SCHEMA_SUITE");
	char dir[1024];
	size_t n = 0, i;
	int rc;

	if (root == NULL || *root == '\0')
		root = DEFAULT_SUITE;
	snprintf(remotes, sizeof(remotes), "%s/remotes", root);
	snprintf(dir, sizeof(dir), "%s/tests/draft7", root);
	n = list_dir(dir, "", REQUIRED, files, n, 256);
	if (n == 0) {
		fprintf(stderr, "test_schema_suite: no suite files in %s (install json-schema-test-suite: make deps)\n", dir);
		return 1;
	}
	snprintf(dir, sizeof(dir), "%s/tests/draft7/optional/format", root);
	n = list_dir(dir, "format/", FORMAT, files, n, 256);
	snprintf(dir, sizeof(dir), "%s/tests/draft7/optional", root);
	n = list_dir(dir, "optional/", OPTIONAL, files, n, 256);
	qsort(files, n, sizeof(files[0]), by_name);
	for (i = 0; i < n; i++) {
		tests[i].name = files[i].name;
		tests[i].test_func = run_file;
		tests[i].initial_state = &files[i];
	}
	rc = _cmocka_run_group_tests("schema_suite", tests, n, NULL, NULL);
	printf("draft7 required: %zu/%zu passed\n", counts[REQUIRED].passed, counts[REQUIRED].total);
	printf("optional format: %zu/%zu passed\n", counts[FORMAT].passed, counts[FORMAT].total);
	printf("optional other (not required): %zu/%zu passed\n", counts[OPTIONAL].passed, counts[OPTIONAL].total);
	return rc;
}
