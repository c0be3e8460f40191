/* text.c -- a growing NUL-terminated text buffer, UTF-8 decoding and
 * escaping for display (text.h). */
#include "text.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

void
sl_text_put(struct sl_text *t, const char *s, size_t n)
{
	char *grown;
	size_t cap;

	if (t->oom)
		return;
	if (t->len + n + 1 > t->cap) {
		for (cap = t->cap ? t->cap * 2 : 256; cap < t->len + n + 1; cap *= 2)
			;
		if ((grown = realloc(t->p, cap)) == NULL) {
			t->oom = 1;
			return;
		}
		t->p = grown;
		t->cap = cap;
	}
	memcpy(t->p + t->len, s, n);
	t->len += n;
	t->p[t->len] = '\0';
}

void
sl_text_puts(struct sl_text *t, const char *s)
{
	sl_text_put(t, s, strlen(s));
}

size_t
sl_text_utf8_seq(const char *s, size_t n, unsigned *cp)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t len, i;
	unsigned c;

	assert(n > 0);
	*cp = 0;
	if (p[0] < 0x80) {
		*cp = p[0];
		return 1;
	}
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2, c = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3, c = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4, c = p[0] & 0x07;
	else
		return 0;
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (p[i] & 0x3f);
	}
	if ((len == 3 && c < 0x800) || (len == 4 && c < 0x10000) || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

/* Code points a terminal may act on rather than show: C0 and C1 controls,
 * DEL, and the bidirectional overrides and isolates that reorder text. */
static int
is_control(unsigned cp)
{
	return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) ||
	       (cp >= 0x2066 && cp <= 0x2069);
}

size_t
sl_text_escape_untrusted(const char *in, size_t in_len, char *out, size_t out_size)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = (const unsigned char *)in;
	size_t i = 0, o = 0, len, k, w;
	unsigned cp;

	if (out_size == 0)
		return 0;
	while (i < in_len) {
		len = sl_text_utf8_seq(in + i, in_len - i, &cp);
		/* An escaped unit is \xNN per byte; a backslash is doubled so
		 * that an escape in the output always comes from us. */
		if (len == 0 || is_control(cp))
			w = (len ? len : 1) * 4;
		else if (cp == '\\')
			w = 2;
		else
			w = len;
		if (o + w >= out_size)
			break;      /* whole units only: never half a character */
		if (len == 0 || is_control(cp)) {
			for (k = 0; k < (len ? len : 1); k++) {
				out[o++] = '\\';
				out[o++] = 'x';
				out[o++] = hex[p[i + k] >> 4];
				out[o++] = hex[p[i + k] & 0xf];
			}
			i += len ? len : 1;
		} else if (cp == '\\') {
			out[o++] = '\\';
			out[o++] = '\\';
			i++;
		} else {
			memcpy(out + o, p + i, len);
			o += len;
			i += len;
		}
	}
	out[o] = '\0';
	return i;
}
