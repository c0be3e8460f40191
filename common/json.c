/* json.c -- behind json.h: a schema's "integer" read as an int64, and JSON
 * text written the way jansson's json_dumps() writes it, faster.
 *
 * Not for: parsing, or building values (jansson does that).
 */
#include "json.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "text.h"

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

/* Appends n bytes of s as a JSON string. */
void
sl_json_write_chars(struct sl_text *t, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, run = 0, seq;
	unsigned cp;
	char esc[7];

	sl_text_put(t, "\"", 1);
	while (i < n) {
		if (p[i] >= 0x20 && p[i] < 0x80 && p[i] != '"' && p[i] != '\\') {
			i++;
			continue;
		}
		seq = sl_text_utf8_seq(s + i, n - i, &cp);
		if (seq > 1) {
			i += seq;
			continue;
		}
		/* What needs writing differently: the run before it goes as it is. */
		sl_text_put(t, s + run, i - run);
		if (seq == 0) {
			sl_text_put(t, "\xef\xbf\xbd", 3);
		} else {
			switch (p[i]) {
			case '"': sl_text_put(t, "\\\"", 2); break;
			case '\\': sl_text_put(t, "\\\\", 2); break;
			case '\b': sl_text_put(t, "\\b", 2); break;
			case '\f': sl_text_put(t, "\\f", 2); break;
			case '\n': sl_text_put(t, "\\n", 2); break;
			case '\r': sl_text_put(t, "\\r", 2); break;
			case '\t': sl_text_put(t, "\\t", 2); break;
			default:
				memcpy(esc, "\\u00", 4);
				esc[4] = hex[p[i] >> 4];
				esc[5] = hex[p[i] & 0xf];
				sl_text_put(t, esc, 6);
			}
		}
		run = ++i;
	}
	sl_text_put(t, s + run, n - run);
	sl_text_put(t, "\"", 1);
}

/* json_dump_callback()'s sink: appends to the sl_text in data. */
static int
put_dumped(const char *buffer, size_t size, void *data)
{
	struct sl_text *t = data;

	sl_text_put(t, buffer, size);
	return t->oom ? -1 : 0;
}

/* sl_json_write() at nesting level depth. */
static int
write_value(struct sl_text *t, json_t *v, int depth)
{
	char digits[24], *d;
	unsigned long long u;
	json_t *item;
	size_t i;
	void *it;

	if (depth > SL_JSON_WRITE_MAX_DEPTH) {
		t->oom = 1;
		return -1;
	}
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		sl_text_put(t, "{", 1);
		for (it = json_object_iter(v); it != NULL; it = json_object_iter_next(v, it)) {
			if (it != json_object_iter(v))
				sl_text_put(t, ",", 1);
			sl_json_write_chars(t, json_object_iter_key(it), json_object_iter_key_len(it));
			sl_text_put(t, ":", 1);
			if (write_value(t, json_object_iter_value(it), depth + 1) != 0)
				return -1;
		}
		sl_text_put(t, "}", 1);
		break;
	case JSON_ARRAY:
		sl_text_put(t, "[", 1);
		json_array_foreach(v, i, item) {
			if (i > 0)
				sl_text_put(t, ",", 1);
			if (write_value(t, item, depth + 1) != 0)
				return -1;
		}
		sl_text_put(t, "]", 1);
		break;
	case JSON_STRING:
		sl_json_write_chars(t, json_string_value(v), json_string_length(v));
		break;
	case JSON_INTEGER:
		/* Negated as unsigned, so that INT64_MIN has its digits too. */
		u = (unsigned long long)json_integer_value(v);
		if (json_integer_value(v) < 0)
			u = -u;
		d = digits + sizeof(digits);
		do {
			*--d = (char)('0' + u % 10);
			u /= 10;
		} while (u != 0);
		if (json_integer_value(v) < 0)
			*--d = '-';
		sl_text_put(t, d, (size_t)(digits + sizeof(digits) - d));
		break;
	case JSON_REAL:
		if (!t->oom && json_dump_callback(v, put_dumped, t, JSON_COMPACT | JSON_ENCODE_ANY) != 0)
			t->oom = 1;
		break;
	case JSON_TRUE:
		sl_text_puts(t, "true");
		break;
	case JSON_FALSE:
		sl_text_puts(t, "false");
		break;
	case JSON_NULL:
		sl_text_puts(t, "null");
		break;
	}
	return t->oom ? -1 : 0;
}

int
sl_json_write(struct sl_text *t, json_t *v)
{
	assert(v != NULL);
	return write_value(t, v, 0);
}
