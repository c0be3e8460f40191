/* json.c -- number reading behind json.h: a schema's "integer" as an int64.
 *
 * Not for: anything else about JSON (jansson does that).
 */
#include "json.h"

#include <assert.h>
#include <stdint.h>

/* 2^63 exactly, as a double: the first real an int64 cannot hold. */
#define TWO_POW_63 9223372036854775808.0

int
sl_json_int64(const json_t *v, json_int_t *out)
{
	double d;

	assert(sizeof(json_int_t) == sizeof(int64_t));
	*out = 0;
	if (json_is_integer(v)) {
		*out = json_integer_value(v);
		return 0;
	}
	if (!sl_json_is_integral(v))
		return -1;
	/* Integral and finite; in range, the conversion is exact. */
	d = json_real_value(v);
	if (d < -TWO_POW_63 || d >= TWO_POW_63)
		return -1;
	*out = (json_int_t)d;
	return 0;
}
