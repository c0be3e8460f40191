/* log.h -- one log API for sluice: a line per event on stderr.
 *
 * Lines are `key=value` (default) or JSON objects, journald friendly: no
 * colours, no timestamps when stderr goes to the journal (JOURNAL_STREAM set).
 * The level test is inside the macros, so a disabled level costs a load and a
 * branch. Callers pass a message in PostgreSQL's voice (lowercase, no final
 * period); the fields after it are optional `key=value` pairs built by the
 * caller. Never pass a secret: conninfo strings go through
 * sl_pg_conninfo_redact() (pg.h).
 * All functions are thread-safe.
 */
#ifndef SL_LOG_H
#define SL_LOG_H

#include <stdatomic.h>

#include <stddef.h>

enum sl_log_level {
	SL_LOG_ERROR = 0,
	SL_LOG_WARN = 1,
	SL_LOG_INFO = 2,
	SL_LOG_DEBUG = 3,
};

enum sl_log_format {
	SL_LOG_KV = 0,
	SL_LOG_JSON = 1,
};

/* The level in force: written on SIGHUP while every thread reads it, so
 * atomic (relaxed is enough: a line logged at the old level is harmless). */
extern atomic_int sl_log_level_current;

/* Sets the process-wide level and format; safe to call while other threads log. */
void sl_log_set_level(enum sl_log_level level);
void sl_log_set_format(enum sl_log_format format);

/* Parses "error", "warn", "info", "debug"; returns -1 for anything else. */
int sl_log_level_parse(const char *name);

/* Sets the program name written as `prog=` (default "sluice"). Not thread-safe:
 * call once at start. */
void sl_log_set_program(const char *name);

/* Writes one line: level, message, then the optional job id and extra
 * `key=value` fields (may be NULL). Use the macros below. */
void sl_log_write(enum sl_log_level level, const char *job_id, const char *fields,
                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Writes one line in `format` rather than the process's: for what a
 * configuration says while it is being loaded, before its log.format is
 * applied. */
void sl_log_write_format(enum sl_log_format format, enum sl_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Copies conninfo into buf as sl_pg_conninfo_redact() (pg.h) does, with
 * "(invalid)" for a string libpq cannot parse. New code calls
 * sl_pg_conninfo_redact() itself. */
void sl_log_redact(const char *conninfo, char *buf, size_t buf_size);

#define sl_log_at(level, job, ...)                                                          \
	do {                                                                                 \
		if ((int)(level) <= atomic_load_explicit(&sl_log_level_current, memory_order_relaxed)) \
			sl_log_write((level), (job), NULL, __VA_ARGS__);                             \
	} while (0)

#define sl_log_error(...) sl_log_at(SL_LOG_ERROR, NULL, __VA_ARGS__)
#define sl_log_warn(...)  sl_log_at(SL_LOG_WARN, NULL, __VA_ARGS__)
#define sl_log_info(...)  sl_log_at(SL_LOG_INFO, NULL, __VA_ARGS__)
#define sl_log_debug(...) sl_log_at(SL_LOG_DEBUG, NULL, __VA_ARGS__)

/* Job-scoped variants: the job id is written as its own field. */
#define sl_log_job_error(job, ...) sl_log_at(SL_LOG_ERROR, (job), __VA_ARGS__)
#define sl_log_job_warn(job, ...)  sl_log_at(SL_LOG_WARN, (job), __VA_ARGS__)
#define sl_log_job_info(job, ...)  sl_log_at(SL_LOG_INFO, (job), __VA_ARGS__)
#define sl_log_job_debug(job, ...) sl_log_at(SL_LOG_DEBUG, (job), __VA_ARGS__)

#endif
