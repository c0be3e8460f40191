/* log.c -- the log line writer behind log.h.
 *
 * Formats a whole line in a stack buffer and writes it with one write(2), so
 * lines from several threads never interleave. Not a log router: lines go to
 * stderr only, and journald or the supervisor takes it from there.
 */
#include "log.h"
#include "pg.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

atomic_int sl_log_level_current = SL_LOG_INFO;
static atomic_int log_format = SL_LOG_KV;
static const char *log_program = "sluice";

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void
sl_log_set_level(enum sl_log_level level)
{
	atomic_store(&sl_log_level_current, (int)level);
}

void
sl_log_set_format(enum sl_log_format format)
{
	atomic_store(&log_format, (int)format);
}

void
sl_log_set_program(const char *name)
{
	log_program = name;
}

int
sl_log_level_parse(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcmp(name, level_names[i]) == 0)
			return (int)i;
	if (strcmp(name, "warning") == 0)
		return SL_LOG_WARN;
	return -1;
}

/* Bytes kept free at the end of a line for what closes it: a closing
 * quote, `,"truncated":true`, `}` and the newline. */
#define LINE_RESERVE 24

/* Drops a UTF-8 sequence cut short at the end of buf[start, *off). */
static void
trim_partial_utf8(const char *buf, size_t start, size_t *off)
{
	size_t k = *off, need;
	unsigned char lead;

	while (k > start && ((unsigned char)buf[k - 1] & 0xc0) == 0x80)
		k--;
	if (k == start || ((unsigned char)buf[k - 1] & 0xc0) != 0xc0)
		return;
	lead = (unsigned char)buf[k - 1];
	need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
	if (*off - (k - 1) < need)
		*off = k - 1;
}

/* Appends s to buf at *off, quoted for the current format when needed,
 * leaving LINE_RESERVE bytes free. A value that does not fit is cut between
 * characters (never inside a UTF-8 sequence or an escape) and still closed;
 * returns -1 then, else 0. */
static int
append_value(char *buf, size_t size, size_t *off, const char *s, int json)
{
	size_t limit = size - LINE_RESERVE, start, need;
	int quote = json, cut = 0;
	const char *p;

	if (!json) {
		quote = (*s == '\0');
		for (p = s; *p && !quote; p++)
			if (*p == ' ' || *p == '"' || *p == '=' || (unsigned char)*p < 0x20)
				quote = 1;
	}
	if (*off + 2 > limit)
		return -1;
	if (quote)
		buf[(*off)++] = '"';
	start = *off;
	for (p = s; *p; p++) {
		unsigned char c = (unsigned char)*p;

		need = (quote && (c == '"' || c == '\\')) || c == '\n' ? 2 : 1;
		if (*off + need + (size_t)quote > limit) {
			cut = 1;
			break;
		}
		if (quote && (c == '"' || c == '\\')) {
			buf[(*off)++] = '\\';
			buf[(*off)++] = (char)c;
		} else if (c == '\n') {
			buf[(*off)++] = '\\';
			buf[(*off)++] = 'n';
		} else if (c < 0x20) {
			buf[(*off)++] = ' ';
		} else {
			buf[(*off)++] = (char)c;
		}
	}
	if (cut)
		trim_partial_utf8(buf, start, off);
	if (quote)
		buf[(*off)++] = '"';
	return cut ? -1 : 0;
}

static void
append_raw(char *buf, size_t size, size_t *off, const char *s)
{
	size_t n = strlen(s);

	if (*off >= size)
		return;
	if (n > size - *off - 1)
		n = size - *off - 1;
	memcpy(buf + *off, s, n);
	*off += n;
}

/* Appends `key=value` or `"key":value`; returns -1 when the value was cut or
 * the field did not fit at all (then nothing is written). */
static int
append_field(char *buf, size_t size, size_t *off, const char *key, const char *value, int json)
{
	if (*off + strlen(key) + 8 > size - LINE_RESERVE)
		return -1;
	if (json) {
		append_raw(buf, size, off, *off > 1 ? ",\"" : "\"");
		append_raw(buf, size, off, key);
		append_raw(buf, size, off, "\":");
	} else {
		if (*off > 0)
			append_raw(buf, size, off, " ");
		append_raw(buf, size, off, key);
		append_raw(buf, size, off, "=");
	}
	return append_value(buf, size, off, value, json);
}

static void log_vwrite(int json, enum sl_log_level level, const char *job_id, const char *fields,
                       const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));

void
sl_log_write(enum sl_log_level level, const char *job_id, const char *fields, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(atomic_load(&log_format) == SL_LOG_JSON, level, job_id, fields, fmt, ap);
	va_end(ap);
}

void
sl_log_write_format(enum sl_log_format format, enum sl_log_level level, const char *fmt, ...)
{
	va_list ap;

	if ((int)level > atomic_load(&sl_log_level_current))
		return;
	va_start(ap, fmt);
	log_vwrite(format == SL_LOG_JSON, level, NULL, NULL, fmt, ap);
	va_end(ap);
}

static void
log_vwrite(int json, enum sl_log_level level, const char *job_id, const char *fields, const char *fmt,
           va_list ap)
{
	char line[4096], msg[2048], ts[96];
	size_t off = 0, n;
	int saved_errno = errno, cut;
	struct timeval tv;
	struct tm tm;

	cut = vsnprintf(msg, sizeof(msg), fmt, ap) >= (int)sizeof(msg);
	if (cut) {
		n = strlen(msg);
		trim_partial_utf8(msg, 0, &n);
		msg[n] = '\0';
	}

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	         (int)(tv.tv_usec / 1000));

	if (json)
		append_raw(line, sizeof(line), &off, "{");
	/* journald stamps lines itself. */
	if (json || getenv("JOURNAL_STREAM") == NULL)
		append_field(line, sizeof(line), &off, "ts", ts, json);
	append_field(line, sizeof(line), &off, "level", level_names[level], json);
	append_field(line, sizeof(line), &off, "prog", log_program, json);
	/* Once a field is cut, the ones after it are left out: the line stays
	 * whole (valid JSON, one newline) and says it was truncated. */
	cut |= append_field(line, sizeof(line), &off, "msg", msg, json) < 0;
	if (!cut && job_id != NULL)
		cut |= append_field(line, sizeof(line), &off, "job", job_id, json) < 0;
	if (!cut && fields != NULL && *fields) {
		/* Extra fields arrive as `k=v k=v`; JSON output keeps them as one string. */
		if (json) {
			cut |= append_field(line, sizeof(line), &off, "fields", fields, json) < 0;
		} else if (off + 1 + strlen(fields) <= sizeof(line) - LINE_RESERVE) {
			append_raw(line, sizeof(line), &off, " ");
			append_raw(line, sizeof(line), &off, fields);
		} else {
			cut = 1;
		}
	}
	/* LINE_RESERVE bytes are still free for these. */
	if (cut)
		append_raw(line, sizeof(line), &off, json ? ",\"truncated\":true" : " truncated=true");
	if (json)
		append_raw(line, sizeof(line), &off, "}");
	line[off++] = '\n';
	(void)!write(STDERR_FILENO, line, off);
	errno = saved_errno;
}

/* Kept for the callers that predate sl_pg_conninfo_redact(), which does the
 * work with libpq's own parser; a string libpq cannot parse is shown as
 * "(invalid)" since the caller prints the connection error beside it. */
void
sl_log_redact(const char *conninfo, char *buf, size_t buf_size)
{
	if (sl_pg_conninfo_redact(conninfo, buf, buf_size) < 0)
		snprintf(buf, buf_size, "(invalid)");
}
