/* html.h -- text from outside made safe inside an HTML page, and JSON made
 * safe inside a <script> element.
 *
 * For the operator's console (cmd/ctl_console*.c), whose pages show job ids,
 * keys, error messages and whole dead letters: hostile input by definition.
 * sl_html_text() is the one way such bytes reach a page, and
 * sl_html_script_json() the one way JSON reaches a script. Not for: building
 * pages (the console does that), URLs (sl_html_url() encodes a query value,
 * and its result still goes through sl_html_text() into an attribute).
 *
 * Everything appends to a struct sl_text (text.h); running out of memory
 * sets its oom flag, checked once at the end. Thread-safe: no state.
 */
#ifndef SL_HTML_H
#define SL_HTML_H

#include <stddef.h>

#include "text.h"

/* Appends n bytes of untrusted s (no NUL needed) as HTML text, safe both
 * between tags and inside a quoted attribute: & < > " ' become entities;
 * control characters other than tab and newline (C0, DEL, C1, the
 * bidirectional overrides) and bytes that are not valid UTF-8 become a
 * visible \xNN per byte, so an escape sequence is shown, never obeyed;
 * valid UTF-8 is kept. This function can't fail (see t->oom). */
void sl_html_text(struct sl_text *t, const char *s, size_t n);

/* sl_html_text() of a NUL-terminated string; NULL appends nothing. */
void sl_html_texts(struct sl_text *t, const char *s);

/* Appends n bytes of JSON text (as json_dumps() writes it) for a <script>
 * element: < > & become \u003c \u003e \u0026, and U+2028, U+2029 \u2028,
 * \u2029. Those characters can only appear inside JSON strings, where the
 * escapes mean the same, so the value is unchanged while "</script>" and
 * "<!--" cannot end or bend the element. This function can't fail. */
void sl_html_script_json(struct sl_text *t, const char *json, size_t n);

/* Appends s percent-encoded for a URL's query (everything but unreserved
 * characters as %XX). The result contains no character HTML treats
 * specially except none; it may still go through sl_html_text(). */
void sl_html_url(struct sl_text *t, const char *s);

#endif
