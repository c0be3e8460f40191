/* text.c -- a growing NUL-terminated text buffer (text.h). */
#include "text.h"

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
