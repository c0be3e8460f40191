/* event.c -- CloudEvents 1.0 jobs in, result events out, behind event.h.
 *
 * Decoding is the boundary where Kafka payloads enter sluice: everything a
 * producer can send is checked here, in either content mode. A binary-mode
 * message is turned into the object its structured form would be (the
 * attributes from its headers, the data from its value) and goes through the
 * same attribute checks, so both modes accept and refuse the same events; and every refusal gets one of the
 * SL_ERR_* codes and a one-line message in PostgreSQL's voice. Messages echo
 * at most a short, escaped piece of the input, so a hostile payload cannot put
 * control characters or invalid UTF-8 into a log line, a dead letter header or
 * a result event. Result events are written as text, keys in a fixed order
 * (json.h's writer gives the bytes json_dumps() would), so the same inputs
 * always give the same bytes.
 *
 * Not for: JSON Schema validation of `data` (schema.c), Kafka or ledger I/O.
 * No function keeps state between calls; all are thread-safe.
 */
#include "event.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "text.h"

/* Longest id, source or type accepted: they key the ledger and name topics
 * and metrics, so a megabyte-long one is a mistake, not an identity. */
#define ATTR_MAX_BYTES 1024

/* Characters of input echoed in an error message before "...". */
#define ECHO_MAX_CHARS 64

/* Room for one escaped echo: every character may become a 6-byte escape. */
#define ECHO_BUF_SIZE (ECHO_MAX_CHARS * 6 + 8)

/* The code size event.h promises the caller. */
#define CODE_SIZE 32

/* Copies up to ECHO_MAX_CHARS characters of s (n bytes, not NUL-terminated)
 * into out (ECHO_BUF_SIZE bytes) so that the copy is valid UTF-8 without
 * control characters: `"` and `\` are backslash-escaped, C0 controls and DEL
 * become \n, \t, \r or \xNN, invalid bytes become \xNN, and C1 controls and
 * the Unicode line separators become \uNNNN. Appends "..." when s is longer.
 * This function can't fail. */
static void
escape_input(const char *s, size_t n, char *out)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, o = 0, chars = 0, seq;
	unsigned cp;

	while (i < n && chars < ECHO_MAX_CHARS) {
		unsigned char c = p[i];
		if (c == '"' || c == '\\') {
			o += (size_t)snprintf(out + o, ECHO_BUF_SIZE - o, "\\%c", c);
			i++;
		} else if (c == '\n' || c == '\t' || c == '\r') {
			o += (size_t)snprintf(out + o, ECHO_BUF_SIZE - o, "\\%c",
			                      c == '\n' ? 'n' : c == '\t' ? 't' : 'r');
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			o += (size_t)snprintf(out + o, ECHO_BUF_SIZE - o, "\\x%02x", c);
			i++;
		} else if (c < 0x80) {
			out[o++] = (char)c;
			i++;
		} else if ((seq = sl_text_utf8_seq(s + i, n - i, &cp)) == 0) {
			o += (size_t)snprintf(out + o, ECHO_BUF_SIZE - o, "\\x%02x", c);
			i++;
		} else if ((cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029) {
			o += (size_t)snprintf(out + o, ECHO_BUF_SIZE - o, "\\u%04x", (unsigned)cp);
			i += seq;
		} else {
			memcpy(out + o, p + i, seq);
			o += seq;
			i += seq;
		}
		chars++;
		assert(o < ECHO_BUF_SIZE - 4);
	}
	if (i < n) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
}

/* Cuts a multi-byte UTF-8 sequence that snprintf() truncated at the end of
 * buf, so that a short errbuf still holds valid UTF-8. */
static void
trim_partial_utf8(char *buf)
{
	size_t n = strlen(buf), back = 0, need;
	unsigned char lead;

	while (back < 4 && back < n && ((unsigned char)buf[n - 1 - back] & 0xc0) == 0x80)
		back++;
	if (back == n)
		return;
	lead = (unsigned char)buf[n - 1 - back];
	if (lead < 0xc0)
		return;
	need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
	if (back + 1 < need)
		buf[n - 1 - back] = '\0';
}

/* Sets the caller's code and errbuf (either may be NULL). The format's
 * arguments that come from input must already be escaped with
 * escape_input(). Returns -1 so callers can `return set_error(...)`. */
static int set_error(char *code, char *errbuf, size_t errbuf_size, const char *err_code,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int
set_error(char *code, char *errbuf, size_t errbuf_size, const char *err_code, const char *fmt, ...)
{
	va_list ap;

	if (code != NULL)
		snprintf(code, CODE_SIZE, "%s", err_code);
	if (errbuf != NULL && errbuf_size > 0) {
		va_start(ap, fmt);
		vsnprintf(errbuf, errbuf_size, fmt, ap);
		va_end(ap);
		trim_partial_utf8(errbuf);
	}
	return -1;
}

/* Turns jansson's parse error into ours. jansson's text is its own words
 * followed by ` near '<input token>'`; the token is input, so it is escaped
 * and capped like any other echo. */
static int
parse_error(const json_error_t *jerr, char *code, char *errbuf, size_t errbuf_size)
{
	char words[ECHO_BUF_SIZE], token[ECHO_BUF_SIZE];
	const char *near = strstr(jerr->text, " near '");
	size_t wlen, tlen;

	wlen = near ? (size_t)(near - jerr->text) : strlen(jerr->text);
	escape_input(jerr->text, wlen, words);
	token[0] = '\0';
	if (near != NULL) {
		near += strlen(" near '");
		tlen = strlen(near);
		if (tlen > 0 && near[tlen - 1] == '\'')
			tlen--;
		/* A duplicate key's token is the JSON string, quotes included;
		 * the message quotes the key itself. */
		if (json_error_code(jerr) == json_error_duplicate_key && tlen >= 2 && near[0] == '"' &&
		    near[tlen - 1] == '"') {
			near++;
			tlen -= 2;
		}
		escape_input(near, tlen, token);
	}

	switch (json_error_code(jerr)) {
	case json_error_numeric_overflow:
		return set_error(code, errbuf, errbuf_size, SL_ERR_NUMBER_OUT_OF_RANGE,
		                 "number %s at line %d, column %d is out of range", token,
		                 jerr->line, jerr->column);
	case json_error_duplicate_key:
		return set_error(code, errbuf, errbuf_size, SL_ERR_INVALID_JSON,
		                 "invalid json at line %d, column %d: duplicate object key \"%s\"",
		                 jerr->line, jerr->column, token);
	case json_error_stack_overflow:
		return set_error(code, errbuf, errbuf_size, SL_ERR_INVALID_JSON,
		                 "invalid json at line %d, column %d: nested deeper than %d levels",
		                 jerr->line, jerr->column, JSON_PARSER_MAX_DEPTH);
	case json_error_null_character:
		/* jansson's words name its JSON_ALLOW_NUL flag, which means nothing
		 * to a producer. */
		return set_error(code, errbuf, errbuf_size, SL_ERR_INVALID_JSON,
		                 "invalid json at line %d, column %d: \\u0000 is not allowed in strings",
		                 jerr->line, jerr->column);
	case json_error_out_of_memory:
		return set_error(code, errbuf, errbuf_size, SL_ERR_INVALID_JSON,
		                 "could not parse message: out of memory");
	default:
		if (near != NULL)
			return set_error(code, errbuf, errbuf_size, SL_ERR_INVALID_JSON,
			                 "invalid json at line %d, column %d: %s near '%s'", jerr->line,
			                 jerr->column, words, token);
		return set_error(code, errbuf, errbuf_size, SL_ERR_INVALID_JSON,
		                 "invalid json at line %d, column %d: %s", jerr->line, jerr->column,
		                 words);
	}
}

/* "an array", "a string"...: the kind of a JSON value, for messages. */
static const char *
kind_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
	default:
		return "null";
	}
}

/* Refuses attribute `name` (value v) for not being a non-empty string. */
static int
not_a_string(const json_t *v, const char *name, char *code, char *errbuf, size_t errbuf_size)
{
	if (json_is_string(v))
		return set_error(code, errbuf, errbuf_size, SL_ERR_INVALID_ATTRIBUTE,
		                 "attribute \"%s\" must be a non-empty string", name);
	return set_error(code, errbuf, errbuf_size, SL_ERR_INVALID_ATTRIBUTE,
	                 "attribute \"%s\" must be a non-empty string, not %s", name, kind_name(v));
}

/* Returns attribute `name` of root, borrowed, or NULL when it is absent. The
 * CloudEvents JSON format treats a null attribute as an absent one. */
static json_t *
attribute(json_t *root, const char *name)
{
	json_t *v = json_object_get(root, name);

	return json_is_null(v) ? NULL : v;
}

/* Reads the required string attribute `name` into *out (OUT: borrowed from
 * root, NULL on failure). */
static int
required_string(json_t *root, const char *name, const char **out, char *code, char *errbuf,
                size_t errbuf_size)
{
	json_t *v = attribute(root, name);

	*out = NULL;
	if (v == NULL)
		return set_error(code, errbuf, errbuf_size, SL_ERR_MISSING_ATTRIBUTE,
		                 "missing required attribute \"%s\"", name);
	if (!json_is_string(v) || json_string_length(v) == 0)
		return not_a_string(v, name, code, errbuf, errbuf_size);
	if (json_string_length(v) > ATTR_MAX_BYTES)
		return set_error(code, errbuf, errbuf_size, SL_ERR_INVALID_ATTRIBUTE,
		                 "attribute \"%s\" is %zu bytes long, above the limit of %d", name,
		                 json_string_length(v), ATTR_MAX_BYTES);
	/* jansson refuses \u0000 without JSON_ALLOW_NUL, so the C string is whole. */
	*out = json_string_value(v);
	return 0;
}

/* Reads the optional string attribute `name` into *out (OUT: borrowed from
 * root, NULL when absent or on failure). */
static int
optional_string(json_t *root, const char *name, const char **out, char *code, char *errbuf,
                size_t errbuf_size)
{
	json_t *v = attribute(root, name);

	*out = NULL;
	if (v == NULL)
		return 0;
	if (!json_is_string(v) || json_string_length(v) == 0)
		return not_a_string(v, name, code, errbuf, errbuf_size);
	*out = json_string_value(v);
	return 0;
}

/* Reads exactly n decimal digits at *p, advancing it. Returns the value or -1. */
static int
digits(const char **p, int n)
{
	int v = 0;

	for (; n > 0; n--, (*p)++) {
		if (**p < '0' || **p > '9')
			return -1;
		v = v * 10 + (**p - '0');
	}
	return v;
}

/* A cheap RFC 3339 date-time check: the shape and the field ranges, not the
 * calendar (February 31 passes). */
static int
looks_like_rfc3339(const char *s)
{
	const char *p = s;
	int mon, day, hour, min, sec;

	if (digits(&p, 4) < 0 || *p++ != '-' || (mon = digits(&p, 2)) < 1 || mon > 12 ||
	    *p++ != '-' || (day = digits(&p, 2)) < 1 || day > 31 || (*p != 'T' && *p != 't'))
		return 0;
	p++;
	if ((hour = digits(&p, 2)) < 0 || hour > 23 || *p++ != ':' || (min = digits(&p, 2)) < 0 ||
	    min > 59 || *p++ != ':' || (sec = digits(&p, 2)) < 0 || sec > 60)
		return 0;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return 0;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'Z' || *p == 'z')
		return p[1] == '\0';
	if (*p != '+' && *p != '-')
		return 0;
	p++;
	if ((hour = digits(&p, 2)) < 0 || hour > 23 || *p++ != ':' || (min = digits(&p, 2)) < 0 ||
	    min > 59)
		return 0;
	return *p == '\0';
}

/* "application/json" with optional parameters ("; charset=utf-8"); media
 * types are case-insensitive. */
static int
is_json_media_type(const char *s)
{
	static const char json_type[] = "application/json";
	size_t n = sizeof(json_type) - 1;

	if (strncasecmp(s, json_type, n) != 0)
		return 0;
	return s[n] == '\0' || s[n] == ';' || s[n] == ' ' || s[n] == '\t';
}

/* Checks the context attributes of event object root (borrowed): specversion
 * "1.0", id, source and type non-empty strings, subject, time (RFC 3339) and
 * datacontenttype (JSON) strings when present. Fills the attribute fields of
 * *e (OUT: borrowed from root; data is left alone), or returns -1 with the
 * error. The one set of rules for both content modes. */
static int
check_attributes(json_t *root, struct sl_event *e, char *code, char *errbuf, size_t errbuf_size)
{
	const char *specversion, *content_type = NULL;
	char echo[ECHO_BUF_SIZE];
	json_t *v;

	v = attribute(root, "specversion");
	if (v == NULL)
		return set_error(code, errbuf, errbuf_size, SL_ERR_MISSING_ATTRIBUTE,
		                 "missing required attribute \"specversion\"");
	if (!json_is_string(v))
		return set_error(code, errbuf, errbuf_size, SL_ERR_INVALID_ATTRIBUTE,
		                 "attribute \"specversion\" must be a string, not %s", kind_name(v));
	specversion = json_string_value(v);
	if (strcmp(specversion, "1.0") != 0) {
		escape_input(specversion, json_string_length(v), echo);
		return set_error(code, errbuf, errbuf_size, SL_ERR_UNSUPPORTED_VERSION,
		                 "unsupported specversion \"%s\": only \"1.0\" is accepted", echo);
	}

	if (required_string(root, "id", &e->id, code, errbuf, errbuf_size) != 0 ||
	    required_string(root, "source", &e->source, code, errbuf, errbuf_size) != 0 ||
	    required_string(root, "type", &e->type, code, errbuf, errbuf_size) != 0 ||
	    optional_string(root, "subject", &e->subject, code, errbuf, errbuf_size) != 0 ||
	    optional_string(root, "time", &e->time, code, errbuf, errbuf_size) != 0 ||
	    optional_string(root, "datacontenttype", &content_type, code, errbuf, errbuf_size) != 0)
		return -1;
	if (e->time != NULL && !looks_like_rfc3339(e->time)) {
		escape_input(e->time, strlen(e->time), echo);
		return set_error(code, errbuf, errbuf_size, SL_ERR_INVALID_ATTRIBUTE,
		                 "attribute \"time\" must be an RFC 3339 timestamp, not \"%s\"", echo);
	}
	if (content_type != NULL && !is_json_media_type(content_type)) {
		escape_input(content_type, strlen(content_type), echo);
		return set_error(code, errbuf, errbuf_size, SL_ERR_INVALID_ATTRIBUTE,
		                 "attribute \"datacontenttype\" must be \"application/json\", not \"%s\"",
		                 echo);
	}
	return 0;
}

/* Parses len bytes of text (not NUL-terminated, not empty) as one JSON
 * value: no NUL byte (jansson's reader would skip it as if it were not
 * there, so `{"a":1<NUL>}` would parse, and JSON allows none anywhere) and
 * no duplicate key (with two "id"s, this decoder and the producer's tools
 * could disagree on which job this is). Returns a new reference, or NULL
 * with the error. */
static json_t *
parse_json(const void *text, size_t len, char *code, char *errbuf, size_t errbuf_size)
{
	const char *nul = memchr(text, '\0', len);
	json_error_t jerr;
	json_t *v;

	if (nul != NULL) {
		set_error(code, errbuf, errbuf_size, SL_ERR_INVALID_JSON,
		          "invalid json: NUL byte at offset %zu", (size_t)(nul - (const char *)text));
		return NULL;
	}
	v = json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
	if (v == NULL)
		parse_error(&jerr, code, errbuf, errbuf_size);
	return v;
}

/* Returns how many arrays and objects nest in v (0 for a scalar), up to
 * `limit`: it stops looking deeper once there. */
static int
nesting(json_t *v, int limit)
{
	int d = 0, k;
	const char *key;
	json_t *item;
	size_t i;

	if (limit <= 0)
		return 0;
	if (json_is_object(v)) {
		json_object_foreach(v, key, item)
			if ((k = nesting(item, limit - 1)) > d)
				d = k;
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, item)
			if ((k = nesting(item, limit - 1)) > d)
				d = k;
	} else {
		return 0;
	}
	return d + 1;
}

/* What both decoders do first: clear the outputs, and refuse a value over
 * max_bytes (0: no limit). Returns 0, or -1 with the error set. */
static int
decode_begin(size_t len, size_t max_bytes, struct sl_event *ev, char *code, char *errbuf, size_t errbuf_size)
{
	assert(ev != NULL);
	memset(ev, 0, sizeof(*ev));
	if (code != NULL)
		code[0] = '\0';
	if (errbuf != NULL && errbuf_size > 0)
		errbuf[0] = '\0';
	if (max_bytes > 0 && len > max_bytes) {
		set_error(code, errbuf, errbuf_size, SL_ERR_MESSAGE_TOO_LARGE,
		          "message of %zu bytes exceeds the limit of %zu bytes", len, max_bytes);
		return -1;
	}
	return 0;
}

int
sl_event_decode(const void *value, size_t len, size_t max_bytes, struct sl_event *ev, char *code,
                char *errbuf, size_t errbuf_size)
{
	struct sl_event e = { 0 };
	json_t *root = NULL;
	int rc = -1;

	if (decode_begin(len, max_bytes, ev, code, errbuf, errbuf_size) < 0)
		goto out;
	if (value == NULL || len == 0) {
		set_error(code, errbuf, errbuf_size, SL_ERR_EMPTY_MESSAGE, "message is empty");
		goto out;
	}
	if ((root = parse_json(value, len, code, errbuf, errbuf_size)) == NULL)
		goto out;
	if (!json_is_object(root)) {
		set_error(code, errbuf, errbuf_size, SL_ERR_NOT_AN_OBJECT,
		          "message is %s, not a JSON object", kind_name(root));
		goto out;
	}

	if (check_attributes(root, &e, code, errbuf, errbuf_size) != 0)
		goto out;

	e.data = attribute(root, "data");
	if (e.data == NULL) {
		set_error(code, errbuf, errbuf_size, SL_ERR_INVALID_DATA,
		          json_object_get(root, "data_base64") != NULL
		                  ? "missing attribute \"data\": binary \"data_base64\" is not accepted"
		                  : "missing attribute \"data\"");
		goto out;
	}
	if (!json_is_object(e.data)) {
		set_error(code, errbuf, errbuf_size, SL_ERR_INVALID_DATA,
		          "attribute \"data\" must be a JSON object, not %s", kind_name(e.data));
		goto out;
	}

	e.root = root;
	root = NULL; /* now owned by *ev */
	*ev = e;
	rc = 0;
out:
	json_decref(root);
	assert(rc == 0 ? ev->root != NULL : ev->root == NULL);
	return rc;
}

/* The headers binary mode reads and the attribute each carries. */
static const struct {
	const char *header;
	const char *attribute;
} binary_headers[] = {
	{ "ce_specversion", "specversion" },
	{ "ce_id", "id" },
	{ "ce_source", "source" },
	{ "ce_type", "type" },
	{ "ce_subject", "subject" },
	{ "ce_time", "time" },
	{ "content-type", "datacontenttype" },
};

#define N_BINARY_HEADERS (sizeof(binary_headers) / sizeof(binary_headers[0]))

/* Returns the index of header `name` in binary_headers, or -1. */
static int
binary_header_index(const char *name)
{
	size_t i;

	for (i = 0; name != NULL && i < N_BINARY_HEADERS; i++)
		if (strcmp(name, binary_headers[i].header) == 0)
			return (int)i;
	return -1;
}

int
sl_event_binary_header(const char *name)
{
	return binary_header_index(name) >= 0;
}

/* Builds the attributes of a binary-mode message: a new object holding, for
 * each header of binary_headers present with a value, its attribute as a
 * string. Returns it, or NULL with the error: a header twice, with a NUL
 * byte, or not UTF-8 (jansson's strings are UTF-8, and a header is text by
 * the binding). */
static json_t *
binary_attributes(const struct sl_event_header *headers, size_t n_headers, char *code,
                  char *errbuf, size_t errbuf_size)
{
	json_t *root = json_object(), *v;
	int seen[N_BINARY_HEADERS] = { 0 }, k;
	size_t i;

	if (root == NULL) {
		set_error(code, errbuf, errbuf_size, SL_ERR_INVALID_JSON,
		          "could not decode message: out of memory");
		return NULL;
	}
	for (i = 0; i < n_headers; i++) {
		if ((k = binary_header_index(headers[i].name)) < 0)
			continue;
		/* Twice is refused, as a duplicate JSON key is: readers could
		 * disagree on which one names the job. */
		if (seen[k]++) {
			set_error(code, errbuf, errbuf_size, SL_ERR_INVALID_ATTRIBUTE,
			          "header \"%s\" appears more than once", binary_headers[k].header);
			goto err;
		}
		if (headers[i].value == NULL)
			continue;
		if (memchr(headers[i].value, '\0', headers[i].len) != NULL) {
			set_error(code, errbuf, errbuf_size, SL_ERR_INVALID_ATTRIBUTE,
			          "header \"%s\" holds a NUL byte", binary_headers[k].header);
			goto err;
		}
		/* json_stringn() checks the UTF-8. */
		v = json_stringn(headers[i].len ? headers[i].value : "", headers[i].len);
		if (v == NULL) {
			set_error(code, errbuf, errbuf_size, SL_ERR_INVALID_ATTRIBUTE,
			          "header \"%s\" is not valid UTF-8", binary_headers[k].header);
			goto err;
		}
		if (json_object_set_new(root, binary_headers[k].attribute, v) != 0) {
			set_error(code, errbuf, errbuf_size, SL_ERR_INVALID_JSON,
			          "could not decode message: out of memory");
			goto err;
		}
	}
	return root;
err:
	json_decref(root);
	return NULL;
}

int
sl_event_decode_binary(const void *value, size_t len, const struct sl_event_header *headers,
                       size_t n_headers, size_t max_bytes, struct sl_event *ev, char *code,
                       char *errbuf, size_t errbuf_size)
{
	struct sl_event e = { 0 };
	json_t *root = NULL, *data = NULL;
	int rc = -1;

	if (decode_begin(len, max_bytes, ev, code, errbuf, errbuf_size) < 0)
		goto out;
	/* The attributes first: they say whether the value is JSON at all. */
	if ((root = binary_attributes(headers, n_headers, code, errbuf, errbuf_size)) == NULL ||
	    check_attributes(root, &e, code, errbuf, errbuf_size) != 0)
		goto out;

	if (value == NULL || len == 0) {
		set_error(code, errbuf, errbuf_size, SL_ERR_INVALID_DATA,
		          "missing attribute \"data\": the message value is empty");
		goto out;
	}
	if ((data = parse_json(value, len, code, errbuf, errbuf_size)) == NULL)
		goto out;
	if (!json_is_object(data)) {
		set_error(code, errbuf, errbuf_size, SL_ERR_INVALID_DATA,
		          "attribute \"data\" (the message value) must be a JSON object, not %s",
		          kind_name(data));
		goto out;
	}
	/* The same event in structured mode nests data one level deeper, inside
	 * the envelope, and the parser refuses it there: so does this. */
	if (nesting(data, JSON_PARSER_MAX_DEPTH) >= JSON_PARSER_MAX_DEPTH) {
		set_error(code, errbuf, errbuf_size, SL_ERR_INVALID_JSON,
		          "invalid json: nested deeper than %d levels in its event", JSON_PARSER_MAX_DEPTH);
		goto out;
	}
	/* Adding a member leaves the strings e points to where they are. */
	if (json_object_set_new(root, "data", data) != 0) {
		data = NULL; /* json_object_set_new() released it */
		set_error(code, errbuf, errbuf_size, SL_ERR_INVALID_JSON,
		          "could not decode message: out of memory");
		goto out;
	}
	e.data = data; /* borrowed from root */
	data = NULL;

	e.root = root;
	root = NULL; /* now owned by *ev */
	*ev = e;
	rc = 0;
out:
	json_decref(data);
	json_decref(root);
	assert(rc == 0 ? ev->root != NULL : ev->root == NULL);
	return rc;
}

int
sl_event_decode_message(const void *value, size_t len, const struct sl_event_header *headers,
                        size_t n_headers, size_t max_bytes, struct sl_event *ev, char *code,
                        char *errbuf, size_t errbuf_size)
{
	size_t i;

	for (i = 0; i < n_headers; i++)
		if (headers[i].name != NULL && strcmp(headers[i].name, "ce_specversion") == 0)
			return sl_event_decode_binary(value, len, headers, n_headers, max_bytes, ev, code,
			                              errbuf, errbuf_size);
	return sl_event_decode(value, len, max_bytes, ev, code, errbuf, errbuf_size);
}

void
sl_event_clear(struct sl_event *ev)
{
	if (ev == NULL)
		return;
	json_decref(ev->root);
	memset(ev, 0, sizeof(*ev));
}

/* Appends s as a JSON string, or null when s is NULL. */
static void
put_json_string(struct sl_text *b, const char *s)
{
	if (s == NULL)
		sl_text_puts(b, "null");
	else
		sl_json_write_chars(b, s, strlen(s));
}

/* Writes the event text directly: the same bytes jansson would dump for the
 * object described in event.h (compact, keys in that order), without
 * building the object, which took most of a job's JSON time. */
char *
sl_event_result(const struct sl_result *r, const char *result_id, const char *result_source,
                const char *time_rfc3339)
{
	struct sl_text b = { 0 };

	assert(r != NULL && r->status != NULL);
	assert(result_id != NULL && result_source != NULL && time_rfc3339 != NULL);

	sl_text_puts(&b, "{\"specversion\":\"1.0\",\"id\":");
	put_json_string(&b, result_id);
	sl_text_puts(&b, ",\"source\":");
	put_json_string(&b, result_source);
	sl_text_puts(&b, ",\"type\":");
	if (r->job_type != NULL) {
		/* The suffix goes inside the quotes. */
		put_json_string(&b, r->job_type);
		if (!b.oom)
			b.len--;
		sl_text_puts(&b, ".result\"");
	} else {
		sl_text_puts(&b, "\"sluice.unknown.result\"");
	}
	if (r->job_id != NULL) {
		sl_text_puts(&b, ",\"subject\":");
		put_json_string(&b, r->job_id);
	}
	sl_text_puts(&b, ",\"time\":");
	put_json_string(&b, time_rfc3339);
	sl_text_puts(&b, ",\"datacontenttype\":\"application/json\",\"data\":{\"status\":");
	put_json_string(&b, r->status);
	sl_text_puts(&b, ",\"id\":");
	put_json_string(&b, r->job_id);
	sl_text_puts(&b, ",\"source\":");
	put_json_string(&b, r->job_source);
	sl_text_puts(&b, ",\"type\":");
	put_json_string(&b, r->job_type);
	if (strcmp(r->status, "succeeded") == 0) {
		sl_text_puts(&b, ",\"output\":");
		if (r->output == NULL)
			sl_text_puts(&b, "null");
		else
			sl_json_write(&b, r->output);
	} else {
		sl_text_puts(&b, ",\"error\":{\"code\":");
		put_json_string(&b, r->error_code);
		sl_text_puts(&b, ",\"message\":");
		put_json_string(&b, r->error_message);
		sl_text_puts(&b, "}");
	}
	sl_text_puts(&b, "}}");
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

/* Fills buf with n random bytes from the kernel. getrandom(2) with no flags
 * only fails when interrupted (not for requests this small), unsupported or
 * misused; a UUID from a weak source would break dedupe on result ids, so
 * failing to get randomness is fatal rather than degraded. */
static void
random_bytes(unsigned char *buf, size_t n)
{
	size_t got = 0;
	ssize_t k;
	int fd;

	while (got < n) {
		k = getrandom(buf + got, n - got, 0);
		if (k > 0) {
			got += (size_t)k;
		} else if (k < 0 && errno == EINTR) {
			continue;
		} else if (k < 0 && errno == ENOSYS) {
			break;
		} else {
			abort();
		}
	}
	if (got == n)
		return;
	fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		abort();
	while (got < n) {
		k = read(fd, buf + got, n - got);
		if (k > 0)
			got += (size_t)k;
		else if (!(k < 0 && errno == EINTR))
			abort();
	}
	close(fd);
}

/* Random bytes come 512 at a time (32 UUIDs a system call), per thread. */
#define UUID_POOL 512

void
sl_event_uuid(char out[37])
{
	static __thread unsigned char pool[UUID_POOL];
	static __thread size_t used = UUID_POOL;
	static const char hex[] = "0123456789abcdef";
	unsigned char b[16];
	size_t i, o = 0;

	if (used + sizeof(b) > UUID_POOL) {
		random_bytes(pool, UUID_POOL);
		used = 0;
	}
	memcpy(b, pool + used, sizeof(b));
	used += sizeof(b);
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* variant 10 (RFC 4122) */
	for (i = 0; i < sizeof(b); i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[b[i] >> 4];
		out[o++] = hex[b[i] & 0xf];
	}
	out[o] = '\0';
}

void
sl_event_now(char out[32])
{
	struct timespec ts;
	struct tm tm;
	size_t n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 32 - n, ".%06uZ", (unsigned)(ts.tv_nsec / 1000) % 1000000u);
}
