/* config_text.c -- a configuration file and its @includes as one text
 * (config_text.h). */
#include "config_text.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

#define MAX_DEPTH      10                 /* libconfig's own include limit */
#define MAX_TEXT_BYTES (16 * 1024 * 1024) /* all files together */

/* Where the scanner is between lines: libconfig strings and block comments
 * may span lines, and an @include inside either is no include. */
enum state { NORMAL, IN_STRING, IN_COMMENT };

struct reader {
	struct sl_config_text *t;
	struct sl_text out;
	size_t cap_lines;
	char *errbuf;
	size_t errbuf_size;
};

static int fail(struct reader *r, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

int
sl_config_errorv(char *errbuf, size_t errbuf_size, const char *file, int line, const char *fmt, va_list ap)
{
	char msg[512];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (line > 0)
		snprintf(errbuf, errbuf_size, "%s:%d: %s", file, line, msg);
	else
		snprintf(errbuf, errbuf_size, "%s: %s", file, msg);
	return -1;
}

/* Writes `file:line: message` (or `file: message` for line 0); returns -1. */
static int
fail(struct reader *r, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sl_config_errorv(r->errbuf, r->errbuf_size, file, line, fmt, ap);
	va_end(ap);
	return -1;
}

/* Reads the whole file into a new NUL-terminated buffer (*out, the caller
 * frees it) of *len bytes. Returns 0, or -1 with errno set. */
static int
slurp(const char *path, size_t limit, char **out, size_t *len)
{
	FILE *f = fopen(path, "r");
	struct sl_text buf = { NULL, 0, 0, 0 };
	char chunk[8192];
	size_t n;
	int err = 0;

	*out = NULL;
	*len = 0;
	if (f == NULL)
		return -1;
	while (err == 0 && (n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (buf.len + n > limit)
			err = EFBIG;
		sl_text_put(&buf, chunk, n);
	}
	if (err == 0 && ferror(f))
		err = errno ? errno : EIO;
	if (err == 0 && buf.oom)
		err = ENOMEM;
	if (err == 0 && buf.p == NULL && (buf.p = strdup("")) == NULL)
		err = ENOMEM;
	fclose(f);
	if (err != 0) {
		free(buf.p);
		errno = err;
		return -1;
	}
	*out = buf.p;
	*len = buf.len;
	return 0;
}

/* Checks the integer literal of n bytes at s (sign, digits or 0x digits, an
 * optional L or LL) the way libconfig 1.5 stores it: without L it must fit
 * in 32 bits, with L in 64. Returns 0 or -1. */
static int
integer_fits(const char *s, size_t n)
{
	char buf[64];
	int is64 = n > 0 && s[n - 1] == 'L', hex;
	unsigned long long u;
	long long v;

	while (n > 0 && s[n - 1] == 'L')
		n--;
	if (n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	hex = strchr(buf, 'x') != NULL || strchr(buf, 'X') != NULL;
	errno = 0;
	if (hex) {
		u = strtoull(buf, NULL, 16);
		return errno == 0 && u <= (is64 ? (unsigned long long)LLONG_MAX : (unsigned long long)INT_MAX) ? 0 : -1;
	}
	v = strtoll(buf, NULL, 10);
	if (errno != 0)
		return -1;
	return is64 || (v >= INT_MIN && v <= INT_MAX) ? 0 : -1;
}

/* Scans one line (without its newline) from state *st, checking every
 * integer literal outside strings and comments. Returns 0, or -1 (error
 * written) for a literal libconfig would wrap. */
static int
scan_line(struct reader *r, const char *file, int lineno, const char *p, const char *end, enum state *st)
{
	const char *q;

	while (p < end) {
		if (*st == IN_STRING) {
			if (*p == '\\' && p + 1 < end)
				p += 2;
			else if (*p++ == '"')
				*st = NORMAL;
			continue;
		}
		if (*st == IN_COMMENT) {
			if (*p == '*' && p + 1 < end && p[1] == '/') {
				*st = NORMAL;
				p += 2;
			} else {
				p++;
			}
			continue;
		}
		if (*p == '"') {
			*st = IN_STRING;
			p++;
		} else if (*p == '#' || (*p == '/' && p + 1 < end && p[1] == '/')) {
			return 0;
		} else if (*p == '/' && p + 1 < end && p[1] == '*') {
			*st = IN_COMMENT;
			p += 2;
		} else if (isalpha((unsigned char)*p) || *p == '*') {
			/* A name (or true/false): letters, digits, '-', '_', '*'. */
			while (p < end && (isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '*'))
				p++;
		} else if (isdigit((unsigned char)*p) || *p == '.' ||
		           ((*p == '-' || *p == '+') && p + 1 < end && (isdigit((unsigned char)p[1]) || p[1] == '.'))) {
			int is_float = 0;

			q = p;
			if (*q == '-' || *q == '+')
				q++;
			if (q + 1 < end && q[0] == '0' && (q[1] == 'x' || q[1] == 'X')) {
				for (q += 2; q < end && isxdigit((unsigned char)*q); q++)
					;
			} else {
				while (q < end && isdigit((unsigned char)*q))
					q++;
				if (q < end && *q == '.') {
					is_float = 1;
					while (++q < end && isdigit((unsigned char)*q))
						;
				}
				if (q < end && (*q == 'e' || *q == 'E')) {
					is_float = 1;
					if (++q < end && (*q == '-' || *q == '+'))
						q++;
					while (q < end && isdigit((unsigned char)*q))
						q++;
				}
			}
			while (!is_float && q < end && *q == 'L' && q - p < 64)
				q++;
			if (!is_float && integer_fits(p, (size_t)(q - p)) < 0)
				return fail(r, file, lineno, "integer %.*s is out of range", (int)(q - p), p);
			p = q > p ? q : p + 1;
		} else {
			p++;
		}
	}
	return 0;
}

/* If line [p, end) is `@include "path"` (libconfig's form: at the start of a
 * line, spaces allowed), sets *name and *name_len to the path and returns 1. */
static int
include_line(const char *p, const char *end, const char **name, size_t *name_len)
{
	const char *close;

	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if ((size_t)(end - p) < 9 || memcmp(p, "@include", 8) != 0 || (p[8] != ' ' && p[8] != '\t'))
		return 0;
	for (p += 8; p < end && (*p == ' ' || *p == '\t'); p++)
		;
	if (p == end || *p != '"' || (close = memchr(p + 1, '"', (size_t)(end - p - 1))) == NULL)
		return 0;
	*name = p + 1;
	*name_len = (size_t)(close - p - 1);
	return 1;
}

static int
add_line(struct reader *r, const char *file, int lineno, const char *p, size_t n)
{
	struct sl_config_text *t = r->t;

	if (t->n_lines == r->cap_lines) {
		size_t cap = r->cap_lines ? r->cap_lines * 2 : 256;
		void *grown = realloc(t->lines, cap * sizeof(*t->lines));
		if (grown == NULL)
			return fail(r, file, lineno, "out of memory");
		t->lines = grown;
		r->cap_lines = cap;
	}
	t->lines[t->n_lines].file = file;
	t->lines[t->n_lines].line = lineno;
	t->n_lines++;
	sl_text_put(&r->out, p, n);
	sl_text_put(&r->out, "\n", 1);
	if (r->out.oom || r->out.len > MAX_TEXT_BYTES)
		return fail(r, file, lineno, r->out.oom ? "out of memory" : "configuration larger than 16 MiB");
	return 0;
}

/* Keeps a copy of name in t->files; returns the copy (borrowed) or NULL. */
static const char *
keep_name(struct sl_config_text *t, const char *name, size_t len)
{
	char **grown = realloc(t->files, (t->n_files + 1) * sizeof(*t->files));
	char *copy;

	if (grown == NULL)
		return NULL;
	t->files = grown;
	if ((copy = strndup(name, len)) == NULL)
		return NULL;
	t->files[t->n_files++] = copy;
	return copy;
}

/* Appends `file` (kept in t->files) to the text, recursing into its
 * includes. `from`/`from_line` name the @include line (NULL for the top
 * file). */
static int
read_file(struct reader *r, const char *file, int depth, const char *from, int from_line)
{
	enum state st = NORMAL;
	const char *p, *end, *nl, *name;
	char *data = NULL, *path = NULL;
	size_t len, name_len, dir_len;
	int lineno = 0, rc = -1;

	if (slurp(file, MAX_TEXT_BYTES, &data, &len) < 0) {
		if (from == NULL)
			snprintf(r->errbuf, r->errbuf_size, "could not read configuration file \"%s\": %s", file,
			         strerror(errno));
		else
			fail(r, from, from_line, "could not read included file \"%s\": %s", file, strerror(errno));
		goto out;
	}
	if (memchr(data, '\0', len) != NULL) {
		fail(r, file, 0, "not a text file (it holds a NUL byte)");
		goto out;
	}
	for (p = data, end = data + len; p < end; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			nl = end;
		lineno++;
		if (st == NORMAL && include_line(p, nl, &name, &name_len)) {
			if (depth + 1 >= MAX_DEPTH) {
				fail(r, file, lineno, "includes nested more than %d deep", MAX_DEPTH);
				goto out;
			}
			/* Relative to the including file's folder, as a reader expects. */
			dir_len = name_len > 0 && name[0] == '/' ? 0
			          : strrchr(file, '/') ? (size_t)(strrchr(file, '/') - file + 1) : 0;
			if ((path = malloc(dir_len + name_len + 1)) == NULL) {
				fail(r, file, lineno, "out of memory");
				goto out;
			}
			memcpy(path, file, dir_len);
			memcpy(path + dir_len, name, name_len);
			path[dir_len + name_len] = '\0';
			name = keep_name(r->t, path, dir_len + name_len);
			free(path);
			path = NULL;
			if (name == NULL) {
				fail(r, file, lineno, "out of memory");
				goto out;
			}
			if (read_file(r, name, depth + 1, file, lineno) < 0)
				goto out;
			continue;
		}
		if (scan_line(r, file, lineno, p, nl, &st) < 0 || add_line(r, file, lineno, p, (size_t)(nl - p)) < 0)
			goto out;
	}
	rc = 0;
out:
	free(data);
	return rc;
}

int
sl_config_text_read(const char *path, struct sl_config_text *t, char *errbuf, size_t errbuf_size)
{
	struct reader r = { t, { NULL, 0, 0, 0 }, 0, errbuf, errbuf_size };
	const char *top;

	memset(t, 0, sizeof(*t));
	if ((top = keep_name(t, path, strlen(path))) == NULL) {
		snprintf(errbuf, errbuf_size, "out of memory");
		sl_config_text_free(t);
		return -1;
	}
	if (read_file(&r, top, 0, NULL, 0) < 0) {
		free(r.out.p);
		sl_config_text_free(t);
		return -1;
	}
	t->text = r.out.p ? r.out.p : strdup("");
	if (t->text == NULL) {
		snprintf(errbuf, errbuf_size, "out of memory");
		sl_config_text_free(t);
		return -1;
	}
	return 0;
}

const char *
sl_config_text_where(const struct sl_config_text *t, int line, int *file_line)
{
	if (line < 1 || (size_t)line > t->n_lines) {
		*file_line = 0;
		return t->n_files > 0 ? t->files[0] : "";
	}
	*file_line = t->lines[line - 1].line;
	return t->lines[line - 1].file;
}

void
sl_config_text_free(struct sl_config_text *t)
{
	size_t i;

	free(t->text);
	free(t->lines);
	for (i = 0; i < t->n_files; i++)
		free(t->files[i]);
	free(t->files);
	memset(t, 0, sizeof(*t));
}
