/* metrics_int.h -- what metrics.c and metrics_text.c share; not part of the API.
 *
 * The writer's layout and the text format helpers. Every function here is
 * as thread-safe as the writer it is given: one writer belongs to one render.
 */
#ifndef SL_METRICS_INT_H
#define SL_METRICS_INT_H

#include <stddef.h>
#include <stdint.h>

#include "metrics.h"
#include "text.h"

struct sl_metrics_writer {
	struct sl_text text;    /* text.oom: the render returns NULL */
};

/* Name rules of the exposition format: [a-zA-Z_:][a-zA-Z0-9_:]* for metric
 * names (colon_ok), [a-zA-Z_][a-zA-Z0-9_]* and no leading "__" for labels. */
int sl__metrics_valid_name(const char *s, int colon_ok);
int sl__metrics_valid_label_name(const char *s);

/* Appends to the writer's buffer; after an allocation failure they do
 * nothing and w->text.oom stays set. */
void sl__metrics_append(sl_metrics_writer_t *w, const char *s, size_t n);
void sl__metrics_puts(sl_metrics_writer_t *w, const char *s);
void sl__metrics_put_double(sl_metrics_writer_t *w, double v);
void sl__metrics_put_u64(sl_metrics_writer_t *w, uint64_t v);

/* Writes `{a="x",b="y",le="..."}` with the values escaped, or nothing when
 * n is 0 and le is NULL. */
void sl__metrics_put_labels(sl_metrics_writer_t *w, size_t n, char *const *names,
                            char *const *values, const char *le);

/* Formats v with the fewest digits that read back as v; NaN, +Inf, -Inf. */
void sl__metrics_format_double(char *buf, size_t size, double v);

#endif
