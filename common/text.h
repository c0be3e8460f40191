/* text.h -- a growing NUL-terminated text buffer.
 *
 * For code that writes text piece by piece (result events, Prometheus text,
 * translated regular expressions) and wants one check for running out of
 * memory at the end instead of one per piece. Not for: formatting (callers
 * format into a local buffer and append it).
 */
#ifndef SL_TEXT_H
#define SL_TEXT_H

#include <stddef.h>

/* Zero-initialise; p is NULL until the first append. The caller frees p. */
struct sl_text {
	char *p;                   /* NUL-terminated once anything was appended */
	size_t len, cap;
	int oom;                   /* an append ran out of memory: later ones do nothing */
};

/* Appends n bytes of s (no NUL needed). */
void sl_text_put(struct sl_text *t, const char *s, size_t n);

/* Appends the string s. */
void sl_text_puts(struct sl_text *t, const char *s);

#endif
