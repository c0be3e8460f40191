/* config_text.h -- a configuration file and its @includes as one text.
 *
 * libconfig 1.5 resolves a relative `@include "path"` against the working
 * directory, and stores an integer literal too large for 32 bits wrapped
 * (`executors = 4294967300` reads as 4) without a word. So config.c does not
 * let libconfig open files: it reads the file here, splices every included
 * file in place of its @include line (a relative path is relative to the
 * folder of the file that includes it), refuses integer literals libconfig
 * would wrap, and gives libconfig the text, keeping for every line of it the
 * file and line it came from, for `file:line` messages.
 *
 * Not for: the meaning of settings (config.c).
 */
#ifndef SL_CONFIG_TEXT_H
#define SL_CONFIG_TEXT_H

#include <stdarg.h>
#include <stddef.h>

/* Zero-initialise; free with sl_config_text_free(). */
struct sl_config_text {
	char *text;                /* NUL-terminated, every line ends in '\n' */
	size_t n_lines;
	struct sl_config_line {
		const char *file;  /* borrowed from files[] */
		int line;          /* 1-based, in that file */
	} *lines;                  /* lines[i] is line i + 1 of text */
	char **files;              /* the names of the files read, owned */
	size_t n_files;
};

/* Reads `path` and the files it includes into t (OUT: zeroed first; free it
 * with sl_config_text_free() on every path). Returns 0, or -1 with
 * `file:line: what is wrong` (or "could not read ...") in errbuf: an include
 * that cannot be read, nested more than 10 deep, or an integer out of range. */
int sl_config_text_read(const char *path, struct sl_config_text *t, char *errbuf, size_t errbuf_size);

/* Returns the file that line `line` (1-based) of t came from and sets
 * *file_line (OUT) to its line there; for a line outside t, the top file and
 * 0. This function can't fail. */
const char *sl_config_text_where(const struct sl_config_text *t, int line, int *file_line);

/* Frees what t holds and zeroes it; a zeroed t is a no-op. */
void sl_config_text_free(struct sl_config_text *t);

/* Writes `file:line: message` (`file: message` for line 0) into errbuf,
 * the voice of every configuration error; returns -1. */
int sl_config_errorv(char *errbuf, size_t errbuf_size, const char *file, int line, const char *fmt, va_list ap)
	__attribute__((format(printf, 5, 0)));

#endif
