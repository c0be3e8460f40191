/* text.h -- a growing NUL-terminated text buffer, UTF-8 decoding, and
 * untrusted text made safe to show.
 *
 * The buffer is for code that writes text piece by piece (result events,
 * Prometheus text, translated regular expressions) and wants one check for
 * running out of memory at the end instead of one per piece. Not for:
 * formatting (callers format into a local buffer and append it).
 *
 * sl_text_escape_untrusted() is the one way bytes from outside (job types,
 * ids, JSON keys, dead letters) reach a message, a log line or a terminal.
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

/* Returns the length (1 to 4) of the valid UTF-8 sequence at the start of s
 * (n bytes left, n > 0; not NUL-terminated) and sets *cp (OUT) to its code
 * point; or returns 0 and sets *cp to 0 when s starts none: a stray
 * continuation byte, an overlong form, a surrogate, a code point above
 * U+10FFFF, or a sequence cut by the end. The one UTF-8 decoder of sluice.
 * This function can't fail; thread-safe. */
size_t sl_text_utf8_seq(const char *s, size_t n, unsigned *cp);

/* Writes in_len bytes of untrusted input into out for display: printable
 * ASCII and valid UTF-8 unchanged; control characters (C0, DEL, C1, the
 * bidirectional overrides), invalid UTF-8 bytes and truncated sequences as
 * \xNN per byte; a backslash as \\ (so every escape in out is one of
 * these). out is always NUL-terminated; when it is too small the text stops
 * before the first character or escape that does not fit whole, never
 * inside one. Returns the number of input bytes written (less than in_len
 * when cut). This function can't fail; thread-safe. */
size_t sl_text_escape_untrusted(const char *in, size_t in_len, char *out, size_t out_size);

#endif
