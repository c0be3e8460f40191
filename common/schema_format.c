/* schema_format.c -- the "format" keyword: syntax checks of strings.
 *
 * Each checker decides whether a string is well-formed per the RFC the format
 * names (RFC 3339 dates and times, RFC 5321 addresses, RFC 1123 host names,
 * RFC 3986/3987 URIs, RFC 6570 templates, RFC 4122 UUIDs, RFC 6901 pointers).
 * Syntax only: no DNS, no calendar beyond month lengths and leap years.
 * Checkers are pure functions and safe from any thread.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "schema_int.h"

static const struct {
	const char *name;
	enum sl__schema_format f;
} formats[] = {
	{ "date-time", SL__F_DATE_TIME },
	{ "date", SL__F_DATE },
	{ "time", SL__F_TIME },
	{ "email", SL__F_EMAIL },
	{ "idn-email", SL__F_IDN_EMAIL },
	{ "hostname", SL__F_HOSTNAME },
	{ "idn-hostname", SL__F_IDN_HOSTNAME },
	{ "ipv4", SL__F_IPV4 },
	{ "ipv6", SL__F_IPV6 },
	{ "uri", SL__F_URI },
	{ "uri-reference", SL__F_URI_REFERENCE },
	{ "iri", SL__F_IRI },
	{ "iri-reference", SL__F_IRI_REFERENCE },
	{ "uri-template", SL__F_URI_TEMPLATE },
	{ "uuid", SL__F_UUID },
	{ "regex", SL__F_REGEX },
	{ "json-pointer", SL__F_JSON_POINTER },
	{ "relative-json-pointer", SL__F_RELATIVE_JSON_POINTER },
};

/* Returns the format named name, or SL__F_NONE for one we do not check. */
enum sl__schema_format
sl__schema_format_lookup(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(formats) / sizeof(formats[0]); i++)
		if (strcmp(formats[i].name, name) == 0)
			return formats[i].f;
	return SL__F_NONE;
}

static int
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int
is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int
is_hex(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Reads n digits at s into *out; returns 0 or -1. */
static int
digits(const char *s, int n, int *out)
{
	int i;

	*out = 0;
	for (i = 0; i < n; i++) {
		if (!is_digit(s[i]))
			return -1;
		*out = *out * 10 + (s[i] - '0');
	}
	return 0;
}

/* full-date: YYYY-MM-DD; returns the length consumed (10) or -1. */
static int
parse_date(const char *s)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y, m, d;

	if (digits(s, 4, &y) < 0 || s[4] != '-' || digits(s + 5, 2, &m) < 0 || s[7] != '-' ||
	    digits(s + 8, 2, &d) < 0)
		return -1;
	if (m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
		return -1;
	if (m == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
		return -1;
	return 10;
}

/* full-time: HH:MM:SS[.frac](Z|+HH:MM|-HH:MM), the whole of s. A leap
 * second is allowed only where it can occur: 23:59:60 in UTC. */
static int
check_time(const char *s)
{
	int h, m, sec, oh = 0, om = 0, utc_min;

	if (digits(s, 2, &h) < 0 || s[2] != ':' || digits(s + 3, 2, &m) < 0 || s[5] != ':' ||
	    digits(s + 6, 2, &sec) < 0)
		return 0;
	s += 8;
	if (*s == '.') {
		if (!is_digit(*++s))
			return 0;
		while (is_digit(*s))
			s++;
	}
	if (*s == 'Z' || *s == 'z') {
		s++;
	} else if (*s == '+' || *s == '-') {
		int sign = *s == '+' ? 1 : -1;

		if (digits(s + 1, 2, &oh) < 0 || s[3] != ':' || digits(s + 4, 2, &om) < 0)
			return 0;
		if (oh > 23 || om > 59)
			return 0;
		oh *= sign;
		om *= sign;
		s += 6;
	} else {
		return 0;
	}
	if (*s != '\0' || h > 23 || m > 59 || sec > 60)
		return 0;
	if (sec == 60) {
		utc_min = ((h * 60 + m - (oh * 60 + om)) % 1440 + 1440) % 1440;
		if (utc_min != 23 * 60 + 59)
			return 0;
	}
	return 1;
}

static int
check_date_time(const char *s)
{
	if (parse_date(s) < 0 || (s[10] != 'T' && s[10] != 't'))
		return 0;
	return check_time(s + 11);
}

static int
check_ipv4(const char *s)
{
	int part, n, i;

	for (part = 0; part < 4; part++) {
		if (part > 0 && *s++ != '.')
			return 0;
		if (!is_digit(*s))
			return 0;
		/* No leading zeros: "010" reads as octal in some resolvers. */
		if (*s == '0' && is_digit(s[1]))
			return 0;
		for (n = 0, i = 0; is_digit(*s) && i < 3; i++)
			n = n * 10 + (*s++ - '0');
		if (n > 255 || is_digit(*s))
			return 0;
	}
	return *s == '\0';
}

static int
check_ipv6(const char *s)
{
	unsigned char addr[16];

	return inet_pton(AF_INET6, s, addr) == 1;
}

/* RFC 1123 host name; idn allows UTF-8 in labels (no IDNA rules applied). */
static int
check_hostname(const char *s, size_t len, int idn)
{
	size_t label = 0;
	const char *p;

	if (len == 0 || len > 253)
		return 0;
	for (p = s; *p != '\0'; p++) {
		if (*p == '.') {
			if (label == 0 || p[-1] == '-')
				return 0;
			label = 0;
			continue;
		}
		if (!(is_alpha(*p) || is_digit(*p) || *p == '-' || (idn && (unsigned char)*p >= 0x80)))
			return 0;
		if (*p == '-' && label == 0)
			return 0;
		if (++label > 63)
			return 0;
	}
	return label > 0 && p[-1] != '-';
}

/* RFC 5321 Mailbox: dot-atom or quoted local part, host name or address
 * literal domain. */
static int
check_email(const char *s, size_t len, int idn)
{
	static const char atext[] = "!#$%&'*+-/=?^_`{|}~";
	const char *at = strrchr(s, '@'), *p;
	char lit[64];
	size_t n;

	if (at == NULL || at == s)
		return 0;
	if (*s == '"') {
		for (p = s + 1; p < at - 1; p++)
			if (*p == '\\')
				p++;
			else if (*p == '"')
				return 0;
		if (p != at - 1 || *p != '"')
			return 0;
	} else {
		for (p = s; p < at; p++) {
			if (*p == '.') {
				if (p == s || p[-1] == '.' || p + 1 == at)
					return 0;
			} else if (!(is_alpha(*p) || is_digit(*p) || strchr(atext, *p) != NULL ||
			             (idn && (unsigned char)*p >= 0x80))) {
				return 0;
			}
		}
	}
	p = at + 1;
	n = len - (size_t)(p - s);
	if (*p == '[') {
		if (n < 3 || p[n - 1] != ']' || n - 2 >= sizeof(lit))
			return 0;
		memcpy(lit, p + 1, n - 2);
		lit[n - 2] = '\0';
		if (strncmp(lit, "IPv6:", 5) == 0)
			return check_ipv6(lit + 5);
		return check_ipv4(lit);
	}
	return check_hostname(p, n, idn);
}

static int
is_unreserved_or_sub(char c)
{
	return is_alpha(c) || is_digit(c) || strchr("-._~!$&'()*+,;=", c) != NULL;
}

/* authority = [ userinfo "@" ] host [ ":" port ]: a host is an IP literal in
 * brackets or a name without ':', a port only digits. Characters are checked
 * by the caller. */
static int
check_authority(const char *p, const char *end)
{
	const char *at, *q;

	for (at = NULL, q = p; q < end; q++)
		if (*q == '@')
			at = q;
	if (at != NULL)
		p = at + 1;
	if (p < end && *p == '[') {
		while (p < end && *p != ']')
			p++;
		if (p == end)
			return 0;
		p++;
	} else {
		while (p < end && *p != ':')
			p++;
	}
	if (p < end && *p++ != ':')
		return 0;
	for (; p < end; p++)
		if (!is_digit(*p))
			return 0;
	return 1;
}

/* RFC 3986 URI or relative reference (RFC 3987 when iri: any non-ASCII
 * code point passes where a character may appear). */
static int
check_uri(const char *s, int need_scheme, int iri)
{
	const char *p = s, *auth_end = NULL;
	int in_frag = 0;

	/* scheme ":" -- only if what precedes the first ':' is a scheme. */
	if (is_alpha(*p)) {
		const char *q = p;

		while (is_alpha(*q) || is_digit(*q) || *q == '+' || *q == '-' || *q == '.')
			q++;
		if (*q == ':')
			p = q + 1;
	}
	if (p == s && need_scheme)
		return 0;
	if (p[0] == '/' && p[1] == '/') {
		p += 2;
		auth_end = p + strcspn(p, "/?#");
		if (!check_authority(p, auth_end))
			return 0;
	}
	for (; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '%') {
			if (!is_hex(p[1]) || !is_hex(p[2]))
				return 0;
			p += 2;
		} else if (c == '[' || c == ']') {
			/* IP literals only, in the authority. */
			if (auth_end == NULL || p >= auth_end)
				return 0;
		} else if (c == '#') {
			if (in_frag)
				return 0;
			in_frag = 1;
		} else if (!(is_unreserved_or_sub((char)c) || c == ':' || c == '@' || c == '/' || c == '?' ||
		             (iri && c >= 0x80))) {
			return 0;
		}
	}
	return 1;
}

/* RFC 6570: literals plus {expressions} that do not nest. */
static int
check_uri_template(const char *s)
{
	const char *p;
	int open = 0;

	for (p = s; *p != '\0'; p++) {
		if (*p == '{') {
			if (open)
				return 0;
			open = 1;
		} else if (*p == '}') {
			if (!open)
				return 0;
			open = 0;
		} else if (open && !(is_alpha(*p) || is_digit(*p) || strchr("_.,%:*+#/;?&=!@|", *p) != NULL)) {
			return 0;
		} else if (!open && (*p == ' ' || *p == '"' || *p == '\'' || *p == '<' || *p == '>' ||
		                     *p == '\\' || *p == '^' || *p == '`' || *p == '|')) {
			return 0;
		}
	}
	return !open;
}

static int
check_uuid(const char *s, size_t len)
{
	size_t i;

	if (len != 36)
		return 0;
	for (i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return 0;
		} else if (!is_hex(s[i])) {
			return 0;
		}
	}
	return 1;
}

static int
check_json_pointer(const char *s)
{
	if (*s != '\0' && *s != '/')
		return 0;
	for (; *s != '\0'; s++)
		if (*s == '~' && s[1] != '0' && s[1] != '1')
			return 0;
	return 1;
}

static int
check_relative_json_pointer(const char *s)
{
	if (!is_digit(*s) || (*s == '0' && is_digit(s[1])))
		return 0;
	while (is_digit(*s))
		s++;
	if (*s == '#')
		return s[1] == '\0';
	return check_json_pointer(s);
}

static int
check_regex(const char *s)
{
	char err[128];
	pcre2_code *code = sl__schema_regex_compile(s, err, sizeof(err));

	pcre2_code_free(code);
	return code != NULL;
}

/* Returns 1 when s (len bytes, valid UTF-8) is a valid f, 0 when not. A
 * string with an embedded NUL is never valid for any format. */
int
sl__schema_format_check(enum sl__schema_format f, const char *s, size_t len)
{
	if (f == SL__F_NONE)
		return 1;
	if (strlen(s) != len)
		return 0;
	switch (f) {
	case SL__F_DATE_TIME: return check_date_time(s);
	case SL__F_DATE: return parse_date(s) == 10 && s[10] == '\0';
	case SL__F_TIME: return check_time(s);
	case SL__F_EMAIL: return check_email(s, len, 0);
	case SL__F_IDN_EMAIL: return check_email(s, len, 1);
	case SL__F_HOSTNAME: return check_hostname(s, len, 0);
	case SL__F_IDN_HOSTNAME: return check_hostname(s, len, 1);
	case SL__F_IPV4: return check_ipv4(s);
	case SL__F_IPV6: return check_ipv6(s);
	case SL__F_URI: return check_uri(s, 1, 0);
	case SL__F_URI_REFERENCE: return check_uri(s, 0, 0);
	case SL__F_IRI: return check_uri(s, 1, 1);
	case SL__F_IRI_REFERENCE: return check_uri(s, 0, 1);
	case SL__F_URI_TEMPLATE: return check_uri_template(s);
	case SL__F_UUID: return check_uuid(s, len);
	case SL__F_REGEX: return check_regex(s);
	case SL__F_JSON_POINTER: return check_json_pointer(s);
	case SL__F_RELATIVE_JSON_POINTER: return check_relative_json_pointer(s);
	case SL__F_NONE: break;
	}
	return 1;
}
