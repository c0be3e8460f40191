/* fuzz_json.c -- libFuzzer target for the JSON text writer (json.c) against
 * jansson's json_dumps().
 *
 * sl_json_write() claims to write the bytes json_dumps(v, JSON_COMPACT |
 * JSON_ENCODE_ANY) writes; result events, stored and republished byte for
 * byte, rely on it. Byte 0 of the input chooses how the value is made:
 *
 *   bit 0 clear     the rest is JSON text, parsed by jansson (JSON_DECODE_ANY
 *                   and JSON_ALLOW_NUL; bit 1 adds JSON_DECODE_INT_AS_REAL)
 *   bit 0 set       the rest is a little program that builds a value jansson's
 *                   parser would never give: strings and keys of any bytes
 *                   (invalid UTF-8 included, through the _nocheck calls),
 *                   integers and reals of any bits, deep nesting (see build())
 *
 * What is compared, exactly:
 * - when every string and key of the value is valid UTF-8 (jansson judging),
 *   json_dumps() gives a text, sl_json_write() returns 0, and its text is
 *   the same, byte for byte and in length;
 * - otherwise json_dumps()'s text is not defined: it fails on a string that
 *   is not UTF-8, and (jansson 2.14 ignores the error writing a key) writes
 *   broken JSON for such a key: an opening quote, then the next member. So
 *   sl_json_write()'s text is compared with json_dumps()'s for the value
 *   repaired: in every string and key, each byte that starts no valid
 *   UTF-8 sequence replaced by U+FFFD, which is what json.h promises.
 *   Repair can make two keys of an object equal; jansson cannot hold that
 *   object, so then only the next check is made;
 * - whatever the value, sl_json_write()'s text parses back with jansson
 *   (unless a key holds a NUL or the value nests past JSON_PARSER_MAX_DEPTH,
 *   which jansson's parser refuses); and when
 *   the value came from JSON text, it parses back to an equal value;
 * - a value nesting deeper than SL_JSON_WRITE_MAX_DEPTH is refused (-1,
 *   oom set), and json_dumps() is not asked (it has no limit, and would
 *   overflow the stack soon after).
 * Built and run by `make fuzz`; seeds and regression inputs live in
 * tests/fuzz/corpus/json.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                      \
	do {                             \
		if (!(cond))             \
			__builtin_trap(); \
	} while (0)

/* The most values build() keeps on its stack. */
#define STACK_MAX 64

/* Reads the input one byte or one run at a time; past the end, zeros. */
struct reader {
	const uint8_t *p;
	size_t n;
};

static uint8_t
next_byte(struct reader *r)
{
	uint8_t b = 0;

	if (r->n > 0) {
		b = *r->p++;
		r->n--;
	}
	return b;
}

/* Points *out at the next run of bytes (its length the next byte, cut at
 * the end) and returns its length. */
static size_t
next_run(struct reader *r, const char **out)
{
	size_t len = next_byte(r);

	if (len > r->n)
		len = r->n;
	*out = (const char *)r->p;
	r->p += len;
	r->n -= len;
	return len;
}

/* Builds a value from the program in r: one opcode byte (its low 3 bits)
 * at a time, on a stack of values:
 *   0 push a string: a length byte, then that many bytes
 *   1 push an integer: 8 bytes
 *   2 push a real: 8 bytes, as a double (not a finite one: skipped)
 *   3 push true, false or null (the next byte modulo 3)
 *   4 pop k values (the next byte modulo the stack's size, plus one) into
 *     an array, pushed
 *   5 pop k values into an object, each under a key read as a string is
 *   6 push an empty object, or array (the next byte's parity)
 *   7 wrap the top value in an array, n times (the next byte)
 * Returns a new reference: the only value left, or an array of them all. */
static json_t *
build(struct reader *r)
{
	json_t *stack[STACK_MAX], *v, *c;
	size_t top = 0, k, i, len;
	const char *s;
	uint64_t bits;
	double d;

	while (r->n > 0) {
		uint8_t op = next_byte(r) & 7;

		v = NULL;
		switch (op) {
		case 0:
			len = next_run(r, &s);
			v = json_stringn_nocheck(len ? s : "", len);
			break;
		case 1:
		case 2:
			bits = 0;
			for (i = 0; i < 8; i++)
				bits = bits << 8 | next_byte(r);
			if (op == 1) {
				v = json_integer((json_int_t)bits);
			} else {
				memcpy(&d, &bits, sizeof(d));
				v = json_real(d); /* NULL when not finite */
			}
			break;
		case 3:
			k = next_byte(r) % 3;
			v = k == 0 ? json_true() : k == 1 ? json_false() : json_null();
			break;
		case 4:
		case 5:
			k = top == 0 ? 0 : next_byte(r) % top + 1;
			v = op == 4 ? json_array() : json_object();
			CHECK(v != NULL);
			for (i = top - k; i < top; i++) {
				if (op == 4) {
					CHECK(json_array_append_new(v, stack[i]) == 0);
				} else {
					len = next_run(r, &s);
					CHECK(json_object_setn_new_nocheck(v, len ? s : "", len, stack[i]) == 0);
				}
			}
			top -= k;
			break;
		case 6:
			v = next_byte(r) & 1 ? json_array() : json_object();
			break;
		case 7:
			if (top == 0)
				break;
			k = next_byte(r);
			for (i = 0; i < k; i++) {
				c = json_array();
				CHECK(c != NULL && json_array_append_new(c, stack[top - 1]) == 0);
				stack[top - 1] = c;
			}
			break;
		}
		if (v == NULL)
			continue;
		if (top == STACK_MAX) {
			json_decref(v);
			continue;
		}
		stack[top++] = v;
	}
	if (top == 1)
		return stack[0];
	v = json_array();
	CHECK(v != NULL);
	for (i = 0; i < top; i++)
		CHECK(json_array_append_new(v, stack[i]) == 0);
	return v;
}

/* Returns 1 when the n bytes at s are valid UTF-8 by jansson's judgement. */
static int
valid_utf8(const char *s, size_t n)
{
	json_t *v = json_stringn(n ? s : "", n);

	json_decref(v);
	return v != NULL;
}

/* Returns 1 when every string and key in v is valid UTF-8. */
static int
all_utf8(json_t *v)
{
	json_t *item;
	size_t i;
	void *it;

	switch (json_typeof(v)) {
	case JSON_STRING:
		return valid_utf8(json_string_value(v), json_string_length(v));
	case JSON_ARRAY:
		json_array_foreach(v, i, item)
			if (!all_utf8(item))
				return 0;
		return 1;
	case JSON_OBJECT:
		for (it = json_object_iter(v); it != NULL; it = json_object_iter_next(v, it))
			if (!valid_utf8(json_object_iter_key(it), json_object_iter_key_len(it)) ||
			    !all_utf8(json_object_iter_value(it)))
				return 0;
		return 1;
	default:
		return 1;
	}
}

/* Returns a malloc'ed copy of the n bytes at s with each byte that starts
 * no valid sequence (no prefix of 1 to 4 bytes from it is valid UTF-8)
 * replaced by U+FFFD; its length in *out_len. */
static char *
repair_text(const char *s, size_t n, size_t *out_len)
{
	char *out = malloc(3 * n + 1);
	size_t i = 0, o = 0, len;

	CHECK(out != NULL);
	while (i < n) {
		for (len = 1; len <= 4 && i + len <= n; len++)
			if (valid_utf8(s + i, len))
				break;
		if (len <= 4 && i + len <= n) {
			memcpy(out + o, s + i, len);
			o += len;
			i += len;
		} else {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
	}
	out[o] = '\0';
	*out_len = o;
	return out;
}

/* Returns a new value like v with its strings and keys repaired
 * (repair_text()), or NULL when repair makes two keys of an object equal. */
static json_t *
repaired(json_t *v)
{
	json_t *out = NULL, *item, *c;
	size_t i, len;
	char *s;
	void *it;

	switch (json_typeof(v)) {
	case JSON_STRING:
		s = repair_text(json_string_value(v), json_string_length(v), &len);
		out = json_stringn(s, len);
		CHECK(out != NULL);
		free(s);
		return out;
	case JSON_ARRAY:
		out = json_array();
		json_array_foreach(v, i, item) {
			if ((c = repaired(item)) == NULL)
				goto fail;
			CHECK(json_array_append_new(out, c) == 0);
		}
		return out;
	case JSON_OBJECT:
		out = json_object();
		for (it = json_object_iter(v); it != NULL; it = json_object_iter_next(v, it)) {
			s = repair_text(json_object_iter_key(it), json_object_iter_key_len(it), &len);
			if (json_object_getn(out, s, len) != NULL ||
			    (c = repaired(json_object_iter_value(it))) == NULL) {
				free(s);
				goto fail;
			}
			CHECK(json_object_setn_new(out, s, len, c) == 0);
			free(s);
		}
		return out;
	default:
		return json_incref(v);
	}
fail:
	json_decref(out);
	return NULL;
}

/* Returns the number of levels in v: 1 for a scalar or an empty container,
 * one more than its deepest member for the others. */
static size_t
levels(json_t *v)
{
	size_t d = 0, k, i;
	json_t *item;
	void *it;

	if (json_is_array(v)) {
		json_array_foreach(v, i, item)
			if ((k = levels(item)) > d)
				d = k;
	} else if (json_is_object(v)) {
		for (it = json_object_iter(v); it != NULL; it = json_object_iter_next(v, it))
			if ((k = levels(json_object_iter_value(it))) > d)
				d = k;
	}
	return d + 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sl_text t = { 0 };
	json_error_t jerr;
	struct reader r;
	json_t *v, *fixed, *back;
	size_t flags, n_levels;
	char *theirs;
	int rc;

	if (size < 1)
		return 0;
	if (data[0] & 1) {
		r.p = data + 1;
		r.n = size - 1;
		v = build(&r);
	} else {
		flags = JSON_DECODE_ANY | JSON_ALLOW_NUL | (data[0] & 2 ? JSON_DECODE_INT_AS_REAL : 0);
		v = json_loadb((const char *)data + 1, size - 1, flags, NULL);
		if (v == NULL)
			return 0;
	}

	rc = sl_json_write(&t, v);
	/* The outermost value is at depth 0, its deepest member at levels - 1. */
	n_levels = levels(v);
	if (n_levels - 1 > SL_JSON_WRITE_MAX_DEPTH) {
		CHECK(rc == -1 && t.oom);
		goto out;
	}
	CHECK(rc == 0 && !t.oom && t.p != NULL && strlen(t.p) == t.len);

	if (all_utf8(v)) {
		theirs = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		CHECK(theirs != NULL && strcmp(t.p, theirs) == 0);
		free(theirs);
	} else if ((fixed = repaired(v)) != NULL) {
		theirs = json_dumps(fixed, JSON_COMPACT | JSON_ENCODE_ANY);
		CHECK(theirs != NULL && strcmp(t.p, theirs) == 0);
		free(theirs);
		json_decref(fixed);
	}

	/* jansson's parser refuses \u0000 in a key however it is written, and
	 * nesting past its limit. */
	back = json_loadb(t.p, t.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
	CHECK(back != NULL || json_error_code(&jerr) == json_error_null_byte_in_key ||
	      (json_error_code(&jerr) == json_error_stack_overflow && n_levels > JSON_PARSER_MAX_DEPTH));
	if (back != NULL && !(data[0] & 1))
		CHECK(json_equal(back, v));
	json_decref(back);
out:
	free(t.p);
	json_decref(v);
	return 0;
}
