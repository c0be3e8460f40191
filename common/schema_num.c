/* schema_num.c -- number comparison, multipleOf and JSON equality for schema.c.
 *
 * jansson hands us int64 (json_int_t) or double. Converting an int64 to double
 * loses precision above 2^53, so mixed comparisons are done by value here, and
 * multipleOf is decided on exact decimals rather than with a tolerance. The
 * rules are spelled out in schema.h. Not for parsing numbers: jansson did that.
 */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema_int.h"

/* Compares an int64 with a double by value. d is finite. */
static int
cmp_int_real(json_int_t i, double d)
{
	double t;
	json_int_t ti;

	/* 2^63 is exact in double; outside [-2^63, 2^63) no int64 can reach d. */
	if (d >= 9223372036854775808.0)
		return -1;
	if (d < -9223372036854775808.0)
		return 1;
	t = trunc(d);
	ti = (json_int_t)t;
	if (i != ti)
		return i < ti ? -1 : 1;
	if (d > t)
		return -1;
	if (d < t)
		return 1;
	return 0;
}

/* Returns <0, 0 or >0 as number a is less than, equal to or greater than b.
 * Both must be json numbers. */
int
sl__schema_num_cmp(const json_t *a, const json_t *b)
{
	double x, y;

	assert(json_is_number(a) && json_is_number(b));
	if (json_is_integer(a) && json_is_integer(b)) {
		json_int_t i = json_integer_value(a), j = json_integer_value(b);

		return (i > j) - (i < j);
	}
	if (json_is_integer(a))
		return cmp_int_real(json_integer_value(a), json_real_value(b));
	if (json_is_integer(b))
		return -cmp_int_real(json_integer_value(b), json_real_value(a));
	x = json_real_value(a);
	y = json_real_value(b);
	return (x > y) - (x < y);
}

/* JSON equality: numbers by value (1 == 1.0), strings by bytes, objects by
 * key set regardless of order. Returns 1 when equal. */
int
sl__schema_json_equal(const json_t *a, const json_t *b)
{
	const char *key;
	json_t *va;
	size_t i;

	if (json_is_number(a) && json_is_number(b))
		return sl__schema_num_cmp(a, b) == 0;
	if (json_typeof(a) != json_typeof(b))
		return 0;
	switch (json_typeof(a)) {
	case JSON_STRING:
		return json_string_length(a) == json_string_length(b) &&
		       memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
	case JSON_ARRAY:
		if (json_array_size(a) != json_array_size(b))
			return 0;
		for (i = 0; i < json_array_size(a); i++)
			if (!sl__schema_json_equal(json_array_get(a, i), json_array_get(b, i)))
				return 0;
		return 1;
	case JSON_OBJECT:
		if (json_object_size(a) != json_object_size(b))
			return 0;
		json_object_foreach((json_t *)a, key, va) {
			const json_t *vb = json_object_get(b, key);

			if (vb == NULL || !sl__schema_json_equal(va, vb))
				return 0;
		}
		return 1;
	default:
		return 1; /* true, false, null: the type is the value */
	}
}

static void
dec_trim(struct sl__schema_dec *d)
{
	if (d->m == 0) {
		d->e = 0;
		return;
	}
	while (d->m % 10 == 0) {
		d->m /= 10;
		d->e++;
	}
}

/* Sets *out to the shortest decimal that reads back as v's value.
 * Returns 0, or -1 for a real that is not finite. */
int
sl__schema_dec_from_json(const json_t *v, struct sl__schema_dec *out)
{
	char buf[40], *p, *end;
	double d;
	int prec;

	out->m = 0;
	out->e = 0;
	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);

		/* Negate in unsigned arithmetic: -INT64_MIN does not fit an int64. */
		out->m = i < 0 ? 0 - (uint64_t)i : (uint64_t)i;
		dec_trim(out);
		return 0;
	}
	d = fabs(json_real_value(v));
	if (!isfinite(d))
		return -1;
	if (d == 0)
		return 0;
	/* 17 significant digits always round-trip a double, so this ends. */
	for (prec = 1; prec <= 17; prec++) {
		snprintf(buf, sizeof(buf), "%.*e", prec - 1, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	for (p = buf; *p != 'e'; p++)
		if (*p >= '0' && *p <= '9')
			out->m = out->m * 10 + (uint64_t)(*p - '0');
	out->e = (int)strtol(p + 1, &end, 10) - (prec - 1);
	dec_trim(out);
	return 0;
}

/* Returns 1 when number v is an integer multiple of m (> 0, whose decimal
 * form is mdec), 0 when not. Exact: see schema.h. */
int
sl__schema_multiple_of(const json_t *v, const json_t *m, const struct sl__schema_dec *mdec)
{
	struct sl__schema_dec x;
	unsigned __int128 r;
	int k;

	if (json_is_integer(v) && json_is_integer(m))
		return json_integer_value(v) % json_integer_value(m) == 0;
	if (sl__schema_dec_from_json(v, &x) < 0)
		return 0;
	if (x.m == 0)
		return 1;
	assert(mdec->m != 0);
	/* x / m = (x.m / mdec->m) * 10^k. Both mantissas are free of trailing
	 * zeros, so for k < 0 x.m would need a factor 10 it does not have. */
	k = x.e - mdec->e;
	if (k < 0)
		return 0;
	r = x.m % mdec->m;
	while (r != 0 && k-- > 0)
		r = (r * 10) % mdec->m;
	return r == 0;
}
