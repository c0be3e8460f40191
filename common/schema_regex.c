/* schema_regex.c -- ECMA-262 regular expressions for JSON Schema, on PCRE2.
 *
 * JSON Schema patterns are ECMA-262 regexes; PCRE2 is close but not equal.
 * This file rewrites the differences that change what matches (\d, \w, \s,
 * \v, ".", \uHHHH, "[]" and "[^]", "[" inside a class) and refuses the PCRE
 * syntax that ECMA does not have (\A, \Z, \Q, inline options, atomic groups),
 * so that "format": "regex" and pattern agree with JavaScript. It does not
 * try to be a full ECMA parser: what PCRE2 then rejects is reported as PCRE2
 * words it. Compiled code is read-only and may be matched from any thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema_int.h"
#include "text.h"

/* ECMA-262 WhiteSpace and LineTerminator code points, as class contents. */
#define ECMA_SPACE "\\t\\n\\x{0B}\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}"
/* Their complements as ranges, for use inside a class where [^...] cannot nest. */
#define ECMA_NOT_SPACE                                                                    \
	"\\x{0}-\\x{8}\\x{E}-\\x{1F}\\x{21}-\\x{9F}\\x{A1}-\\x{167F}\\x{1681}-\\x{1FFF}" \
	"\\x{200B}-\\x{2027}\\x{202A}-\\x{202E}\\x{2030}-\\x{205E}\\x{2060}-\\x{2FFF}"   \
	"\\x{3001}-\\x{D7FF}\\x{E000}-\\x{FEFE}\\x{FF00}-\\x{10FFFF}"
#define ECMA_NOT_DIGIT "\\x{0}-\\x{2F}\\x{3A}-\\x{10FFFF}"
#define ECMA_NOT_WORD "\\x{0}-\\x{2F}\\x{3A}-\\x{40}\\x{5B}-\\x{5E}\\x{60}\\x{7B}-\\x{10FFFF}"

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Reads \uHHHH at s (s points at 'u'); returns the code unit or -1. */
static long
read_u4(const char *s)
{
	long v = 0;
	int i, h;

	for (i = 1; i <= 4; i++) {
		if ((h = hexval(s[i])) < 0)
			return -1;
		v = v * 16 + h;
	}
	return v;
}

/* Translates the escape at *pp (pointing after the backslash) into b.
 * in_class says whether we are inside [...]. Returns 0 or -1 with errbuf. */
static int
escape(struct sl_text *b, const char **pp, int in_class, char *errbuf, size_t errbuf_size)
{
	const char *p = *pp;
	char tmp[32];
	long cp, lo;

	switch (*p) {
	case 'd': sl_text_puts(b, in_class ? "0-9" : "[0-9]"); break;
	case 'D': sl_text_puts(b, in_class ? ECMA_NOT_DIGIT : "[^0-9]"); break;
	case 'w': sl_text_puts(b, in_class ? "A-Za-z0-9_" : "[A-Za-z0-9_]"); break;
	case 'W': sl_text_puts(b, in_class ? ECMA_NOT_WORD : "[^A-Za-z0-9_]"); break;
	case 's': sl_text_puts(b, in_class ? ECMA_SPACE : "[" ECMA_SPACE "]"); break;
	case 'S': sl_text_puts(b, in_class ? ECMA_NOT_SPACE : "[^" ECMA_SPACE "]"); break;
	case 'v': sl_text_puts(b, "\\x{0B}"); break;
	case 'b': sl_text_puts(b, in_class ? "\\x{08}" : "\\b"); break;
	case 'B':
		if (in_class)
			goto bad;
		sl_text_puts(b, "\\B");
		break;
	case 't': case 'n': case 'f': case 'r':
		sl_text_put(b, p - 1, 2);
		break;
	case '0':
		if (p[1] >= '0' && p[1] <= '9')
			goto bad;
		sl_text_puts(b, "\\x{0}");
		break;
	case 'c':
		if (!((p[1] >= 'a' && p[1] <= 'z') || (p[1] >= 'A' && p[1] <= 'Z')))
			goto bad;
		snprintf(tmp, sizeof(tmp), "\\x{%X}", p[1] & 0x1f);
		sl_text_puts(b, tmp);
		p++;
		break;
	case 'x':
		if (hexval(p[1]) < 0 || hexval(p[2]) < 0)
			goto bad;
		snprintf(tmp, sizeof(tmp), "\\x{%c%c}", p[1], p[2]);
		sl_text_puts(b, tmp);
		p += 2;
		break;
	case 'u':
		if (p[1] == '{') {
			const char *q = p + 2;

			cp = 0;
			while (hexval(*q) >= 0 && cp <= 0x10FFFF)
				cp = cp * 16 + hexval(*q++);
			if (q == p + 2 || *q != '}' || cp > 0x10FFFF)
				goto bad;
			p = q;
		} else {
			if ((cp = read_u4(p)) < 0)
				goto bad;
			p += 4;
			/* A surrogate pair written as two escapes is one code point. */
			if (cp >= 0xD800 && cp <= 0xDBFF && p[1] == '\\' && p[2] == 'u' &&
			    (lo = read_u4(p + 2)) >= 0xDC00 && lo <= 0xDFFF) {
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
				p += 6;
			}
		}
		if (cp >= 0xD800 && cp <= 0xDFFF) {
			snprintf(errbuf, errbuf_size, "lone surrogate \\u%04lX is not supported", cp);
			return -1;
		}
		snprintf(tmp, sizeof(tmp), "\\x{%lX}", cp);
		sl_text_puts(b, tmp);
		break;
	case 'p': case 'P':
		if (p[1] != '{')
			goto bad;
		sl_text_put(b, p - 1, 2);
		break;
	case 'k':
		if (p[1] != '<')
			goto bad;
		sl_text_put(b, p - 1, 2);
		break;
	case '\0':
		snprintf(errbuf, errbuf_size, "pattern ends with a backslash");
		return -1;
	default:
		if (*p >= '1' && *p <= '9' && !in_class) {
			sl_text_put(b, p - 1, 2);
			break;
		}
		/* Any other letter or digit is an escape ECMA does not define
		 * (\A, \Z, \z, \Q, \h, \R, ...): PCRE would accept it and
		 * match something JavaScript would not. */
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9'))
			goto bad;
		sl_text_put(b, p - 1, 2);
		break;
	}
	*pp = p + 1;
	return 0;
bad:
	snprintf(errbuf, errbuf_size, "invalid escape \"\\%c\"", *p);
	return -1;
}

/* Rewrites an ECMA-262 pattern into PCRE2 syntax. Returns a new malloc'd
 * string, or NULL with errbuf set. */
static char *
translate(const char *src, char *errbuf, size_t errbuf_size)
{
	struct sl_text b = { 0 };
	const char *p = src;
	int in_class = 0;

	sl_text_puts(&b, "");
	while (*p != '\0') {
		if (*p == '\\') {
			p++;
			if (escape(&b, &p, in_class, errbuf, errbuf_size) < 0)
				goto err;
			continue;
		}
		if (in_class) {
			if (*p == ']')
				in_class = 0;
			/* PCRE reads "[:", "[." and "[=" as POSIX classes. */
			sl_text_put(&b, *p == '[' ? "\\[" : p, *p == '[' ? 2 : 1);
			p++;
			continue;
		}
		switch (*p) {
		case '[':
			if (p[1] == ']') {
				sl_text_puts(&b, "(?!)"); /* ECMA's [] matches nothing */
				p += 2;
			} else if (p[1] == '^' && p[2] == ']') {
				sl_text_puts(&b, "[\\x{0}-\\x{10FFFF}]");
				p += 3;
			} else {
				in_class = 1;
				sl_text_puts(&b, "[");
				p++;
				if (*p == '^')
					sl_text_put(&b, p++, 1);
			}
			break;
		case '.':
			sl_text_puts(&b, "[^\\n\\r\\x{2028}\\x{2029}]");
			p++;
			break;
		case '(':
			if (p[1] == '?' && !(p[2] == ':' || p[2] == '=' || p[2] == '!' ||
			                     (p[2] == '<' && p[3] != '\0'))) {
				snprintf(errbuf, errbuf_size, "group syntax \"(?%c\" is not ECMA-262", p[2]);
				goto err;
			}
			sl_text_put(&b, p++, 1);
			break;
		default:
			sl_text_put(&b, p++, 1);
			break;
		}
	}
	if (b.oom) {
		snprintf(errbuf, errbuf_size, "out of memory");
		goto err;
	}
	return b.p;
err:
	free(b.p);
	return NULL;
}

/* Compiles an ECMA-262 pattern. Returns new code for pcre2_code_free, or
 * NULL with the reason in errbuf. */
pcre2_code *
sl__schema_regex_compile(const char *ecma, char *errbuf, size_t errbuf_size)
{
	PCRE2_UCHAR msg[160];
	PCRE2_SIZE off;
	pcre2_code *code = NULL;
	char *pcre;
	int rc;

	if ((pcre = translate(ecma, errbuf, errbuf_size)) == NULL)
		return NULL;
	code = pcre2_compile((PCRE2_SPTR)pcre, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_DOLLAR_ENDONLY, &rc,
	                     &off, NULL);
	if (code == NULL) {
		pcre2_get_error_message(rc, msg, sizeof(msg));
		snprintf(errbuf, errbuf_size, "%s", (char *)msg);
		goto out;
	}
	/* JIT is an optimisation: without it pcre2_match interprets. */
	(void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
out:
	free(pcre);
	return code;
}

/* Matches subject (valid UTF-8, as jansson guarantees) against code. *md is
 * the caller's match data, created here on first use and freed by the caller
 * (one per thread or per call: it is written by every match). Returns 1 on a
 * match, 0 on none, -1 when PCRE2 fails (out of memory, match limit). */
int
sl__schema_regex_match(const pcre2_code *code, const char *subject, size_t len, pcre2_match_data **md)
{
	int rc;

	if (*md == NULL && (*md = pcre2_match_data_create(1, NULL)) == NULL)
		return -1;
	rc = pcre2_match(code, (PCRE2_SPTR)subject, len, 0, PCRE2_NO_UTF_CHECK, *md, NULL);
	if (rc >= 0)
		return 1;
	return rc == PCRE2_ERROR_NOMATCH ? 0 : -1;
}
