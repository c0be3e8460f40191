/* json.h -- jansson values: numbers read by the rules our schemas use, and
 * JSON text written as json_dumps() writes it.
 *
 * JSON has one number type; jansson splits it into json_int_t (an int64, for
 * literals without a fraction or exponent) and double. JSON Schema draft-07
 * counts any number with no fractional part as an "integer", so a job whose
 * schema says {"type": "integer"} may carry 5, 5.0 or 5e0. A handler that
 * asked jansson for an integer would refuse the last two, and a job the
 * schema let through would fail as invalid data. One rule, here, for both:
 * the schema validator's "integer" test is sl_json_is_integral(), and a
 * handler reads such a value with sl_json_int64().
 *
 * Result events carry a handler's output as JSON text, written once per job;
 * json_dumps() spent most of that time in a snprintf per integer and a
 * callback per token. sl_json_write() writes the same bytes directly, into
 * the result event's own buffer (tests/fuzz/fuzz_json.c holds it to that).
 *
 * Not for: parsing JSON, or numbers beyond int64 (a handler that needs them
 * reads the double itself).
 */
#ifndef SL_JSON_H
#define SL_JSON_H

#include <math.h>
#include <stddef.h>

#include <jansson.h>

struct sl_text;

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

/* A value nesting deeper than this is refused by sl_json_write(): only a
 * cycle gets there (json_dumps() refuses those too). Four times what
 * jansson's parser accepts, so that output wrapping a job's data always
 * fits; each level costs a stack frame of about 100 bytes. */
#define SL_JSON_WRITE_MAX_DEPTH (4 * JSON_PARSER_MAX_DEPTH)

/* Appends v (borrowed, not NULL) to t as json_dumps(v, JSON_COMPACT |
 * JSON_ENCODE_ANY) writes it: the same bytes, keys in the object's order,
 * reals through jansson itself so that their digits are its own. One
 * difference: a string or key byte that starts no valid UTF-8 sequence, on
 * which json_dumps() fails, is written as U+FFFD (a message from a server
 * in another encoding still gives a result event, and always the same
 * one). Returns 0, or -1 with t->oom set when out of memory or v nests
 * deeper than SL_JSON_WRITE_MAX_DEPTH (t then holds a partial text). Any
 * thread, for values no other thread changes. */
int sl_json_write(struct sl_text *t, json_t *v);

/* Appends n bytes of s (not NUL-terminated; NULs allowed) to t as a JSON
 * string, quotes included, as sl_json_write() writes a string: `"`, `\`
 * and the C0 controls escaped as json_dumps() escapes them (\b \f \n \r
 * \t, else \u00XX), other UTF-8 as it is, invalid bytes as U+FFFD. Fails
 * only as t does (t->oom). */
void sl_json_write_chars(struct sl_text *t, const char *s, size_t n);

#endif
