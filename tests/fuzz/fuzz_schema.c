/* fuzz_schema.c -- libFuzzer target for schema.c: compile, then validate.
 *
 * The input is split at its first NUL byte: the bytes before it are the
 * schema, the bytes after it the instance (the whole input is both when there
 * is no NUL). Each parsed document is also validated against the built-in
 * draft-07 meta-schema, which exercises $ref, formats and patterns on
 * arbitrary data. No ref map is given, so nothing is read from disk.
 * Built and run by `make fuzz`; regression inputs live in tests/fuzz/corpus/schema.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sl_schema_t *meta;

/* Validates instance against s both ways: collecting errors and verdict only.
 * The two must agree, and a valid instance has no errors. */
static void
both_ways(const sl_schema_t *s, const json_t *instance)
{
	struct sl_schema_error errs[8];
	char line[1024];
	size_t n = 0;
	int a, b;

	a = sl_schema_validate(s, instance, errs, 8, &n);
	b = sl_schema_validate(s, instance, NULL, 0, NULL);
	if (a != b || (a == 0 && n != 0) || (a != 0 && n == 0))
		__builtin_trap();
	sl_schema_errors_format(errs, n, line, sizeof(line));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t schema_len = nul ? (size_t)(nul - data) : size;
	json_t *schema, *instance = NULL;
	sl_schema_t *s;
	char err[256];

	if (meta == NULL) {
		json_t *ref = json_pack("{s:s}", "$ref", "http://json-schema.org/draft-07/schema#");

		meta = sl_schema_compile(ref, NULL, NULL, 0, err, sizeof(err));
		json_decref(ref);
		if (meta == NULL)
			__builtin_trap();
	}
	schema = json_loadb((const char *)data, schema_len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, NULL);
	if (schema == NULL)
		return 0;
	if (nul != NULL)
		instance = json_loadb((const char *)nul + 1, size - schema_len - 1, JSON_DECODE_ANY, NULL);
	else
		instance = json_incref(schema);
	both_ways(meta, schema);
	s = sl_schema_compile(schema, NULL, NULL, 0, err, sizeof(err));
	if (s != NULL && instance != NULL)
		both_ways(s, instance);
	sl_schema_destroy(s);
	json_decref(schema);
	json_decref(instance);
	return 0;
}
