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

volatile int sl_log_level_current = SL_LOG_INFO;
static volatile int log_format = SL_LOG_KV;
static const char *log_program = "sluice";

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void
sl_log_set_level(enum sl_log_level level)
{
	sl_log_level_current = level;
}

void
sl_log_set_format(enum sl_log_format format)
{
	log_format = format;
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

/* Appends s to buf at *off, quoted for the current format when needed. */
static void
append_value(char *buf, size_t size, size_t *off, const char *s, int json)
{
	int quote = json;
	const char *p;

	if (*off >= size)
		return;
	if (!json) {
		quote = (*s == '\0');
		for (p = s; *p && !quote; p++)
			if (*p == ' ' || *p == '"' || *p == '=' || (unsigned char)*p < 0x20)
				quote = 1;
	}
	if (quote && *off < size - 1)
		buf[(*off)++] = '"';
	for (p = s; *p && *off < size - 2; p++) {
		unsigned char c = (unsigned char)*p;
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
	if (quote && *off < size - 1)
		buf[(*off)++] = '"';
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

static void
append_field(char *buf, size_t size, size_t *off, const char *key, const char *value, int json)
{
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
	append_value(buf, size, off, value, json);
}

void
sl_log_write(enum sl_log_level level, const char *job_id, const char *fields, const char *fmt, ...)
{
	char line[4096], msg[2048], ts[96];
	size_t off = 0;
	int json = log_format == SL_LOG_JSON, saved_errno = errno;
	struct timeval tv;
	struct tm tm;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

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
	append_field(line, sizeof(line), &off, "msg", msg, json);
	if (job_id != NULL)
		append_field(line, sizeof(line), &off, "job", job_id, json);
	if (fields != NULL && *fields) {
		/* Extra fields arrive as `k=v k=v`; JSON output keeps them as one string. */
		if (json)
			append_field(line, sizeof(line), &off, "fields", fields, json);
		else {
			append_raw(line, sizeof(line), &off, " ");
			append_raw(line, sizeof(line), &off, fields);
		}
	}
	if (json)
		append_raw(line, sizeof(line), &off, "}");
	if (off >= sizeof(line) - 1)
		off = sizeof(line) - 2;
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
