/* json.h -- reading numbers out of jansson values by the rules our schemas use.
 *
 * JSON has one number type; jansson splits it into json_int_t (an int64, for
 * literals without a fraction or exponent) and double. JSON Schema draft-07
 * counts any number with no fractional part as an "integer", so a job whose
 * schema says {"type": "integer"} may carry 5, 5.0 or 5e0. A handler that
 * asked jansson for an integer would refuse the last two, and a job the
 * schema let through would fail as invalid data. One rule, here, for both:
 * the schema validator's "integer" test is sl_json_is_integral(), and a
 * handler reads such a value with sl_json_int64().
 * Not for: parsing JSON, or numbers beyond int64 (a handler that needs them
 * reads the double itself).
 */
#ifndef SL_JSON_H
#define SL_JSON_H

#include <math.h>

#include <jansson.h>

/* Returns 1 when v is a number with no fractional part: a json integer, or a
 * finite real equal to its floor (1.0, -3e2, 1e300); 0 otherwise, NULL
 * included. This is draft-07's "integer". Header-only so that the schema
 * validator (also built alone for fuzzing) needs nothing more to link. */
static inline int
sl_json_is_integral(const json_t *v)
{
	double d;

	if (json_is_integer(v))
		return 1;
	if (!json_is_real(v))
		return 0;
	d = json_real_value(v);
	return isfinite(d) && floor(d) == d;
}

/* Reads v (borrowed; may be NULL) into *out (OUT: the value, 0 on failure)
 * when it is integral (sl_json_is_integral) and within int64: a json integer
 * as it is, a real such as 5.0 converted exactly. Returns 0, or -1 when v is
 * missing, not a number, has a fractional part or is out of range (a real
 * at or beyond 2^63 in magnitude, -2^63 itself excepted). Any thread. */
int sl_json_int64(const json_t *v, json_int_t *out);

#endif
