/* html.c -- HTML text and script JSON escaping behind html.h.
 *
 * Kept apart from text.c because its rules are the browser's, not the
 * terminal's: a quote is harmless on a terminal and an attribute breaker in
 * a page. Control characters are rendered as text.c renders them (\xNN), so
 * an operator sees the same bytes in `sluicectl dlq list` and the console.
 */
#include "html.h"

#include <stdio.h>
#include <string.h>

/* Appends byte c as a visible \xNN. */
static void
put_hex(struct sl_text *t, unsigned char c)
{
	char buf[5];

	snprintf(buf, sizeof(buf), "\\x%02X", c);
	sl_text_put(t, buf, 4);
}

void
sl_html_text(struct sl_text *t, const char *s, size_t n)
{
	size_t i = 0, run = 0, len;
	unsigned cp;
	unsigned char c;

	while (i < n) {
		c = (unsigned char)s[i];
		if (c >= 0x20 && c < 0x7f && c != '&' && c != '<' && c != '>' && c != '"' && c != '\'') {
			run++;
			i++;
			continue;
		}
		/* Flush the run of plain ASCII before the special byte. */
		sl_text_put(t, s + i - run, run);
		run = 0;
		switch (c) {
		case '&': sl_text_puts(t, "&amp;"); i++; continue;
		case '<': sl_text_puts(t, "&lt;"); i++; continue;
		case '>': sl_text_puts(t, "&gt;"); i++; continue;
		case '"': sl_text_puts(t, "&quot;"); i++; continue;
		case '\'': sl_text_puts(t, "&#39;"); i++; continue;
		case '\t':
		case '\n': sl_text_put(t, s + i, 1); i++; continue;
		default: break;
		}
		if (c < 0x80) {
			put_hex(t, c); /* C0 and DEL */
			i++;
			continue;
		}
		len = sl_text_utf8_seq(s + i, n - i, &cp);
		if (len == 0) {
			put_hex(t, c);
			i++;
			continue;
		}
		/* C1 controls and the bidirectional overrides and isolates:
		 * they would reorder or hide what is around them. */
		if ((cp >= 0x80 && cp < 0xa0) || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069)) {
			size_t k;

			for (k = 0; k < len; k++)
				put_hex(t, (unsigned char)s[i + k]);
		} else {
			sl_text_put(t, s + i, len);
		}
		i += len;
	}
	sl_text_put(t, s + i - run, run);
}

void
sl_html_texts(struct sl_text *t, const char *s)
{
	if (s != NULL)
		sl_html_text(t, s, strlen(s));
}

void
sl_html_script_json(struct sl_text *t, const char *json, size_t n)
{
	size_t i, from = 0;
	const char *esc;
	unsigned char c;

	for (i = 0; i < n; i++) {
		c = (unsigned char)json[i];
		esc = NULL;
		if (c == '<')
			esc = "\\u003c";
		else if (c == '>')
			esc = "\\u003e";
		else if (c == '&')
			esc = "\\u0026";
		else if (c == 0xe2 && i + 2 < n && (unsigned char)json[i + 1] == 0x80 &&
		         ((unsigned char)json[i + 2] == 0xa8 || (unsigned char)json[i + 2] == 0xa9))
			esc = (unsigned char)json[i + 2] == 0xa8 ? "\\u2028" : "\\u2029";
		if (esc == NULL)
			continue;
		sl_text_put(t, json + from, i - from);
		sl_text_puts(t, esc);
		if (c == 0xe2)
			i += 2;
		from = i + 1;
	}
	sl_text_put(t, json + from, n - from);
}

void
sl_html_url(struct sl_text *t, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char buf[3];
	unsigned char c;

	for (; *s != '\0'; s++) {
		c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    strchr("-._~", c) != NULL) {
			sl_text_put(t, s, 1);
			continue;
		}
		buf[0] = '%';
		buf[1] = hex[c >> 4];
		buf[2] = hex[c & 15];
		sl_text_put(t, buf, 3);
	}
}
