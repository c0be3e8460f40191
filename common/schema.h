/* schema.h -- JSON Schema draft-07 validation on top of jansson.
 *
 * A schema is compiled once (sl_schema_compile or sl_schema_load_file) into
 * an immutable tree, then used to validate any number of instances, from any
 * number of threads at once: sl_schema_validate never writes to the compiled
 * schema, and the PCRE2 match data it needs is allocated per call. This module
 * validates; it does not decode Kafka payloads, coerce types or fill defaults.
 *
 * What is supported: every draft-07 keyword; boolean schemas; $ref with JSON
 * Pointer fragments (with ~0, ~1 and percent-encoding) and with plain-name
 * fragments ("#foo"); $id base-URI changes; the draft-07 meta-schema
 * (http://json-schema.org/draft-07/schema) built in; other remote references
 * only through the caller's ref map (struct sl_schema_ref), never the network.
 * A $ref that cannot be resolved is a compile error, even in a branch that
 * would never be evaluated. Per draft-07, keywords next to a $ref are ignored.
 *
 * Numbers. jansson gives integers as json_int_t (int64) and reals as double;
 * an integer literal beyond 64 bits fails to decode unless the caller passes
 * JSON_DECODE_INT_AS_REAL, in which case it arrives as the nearest double.
 *  - "integer" accepts any json integer and any real with no fractional part
 *    (1.0 is an integer, as draft-07 says).
 *  - minimum, maximum, exclusiveMinimum, exclusiveMaximum compare exactly:
 *    an int64 and a double are compared by value, never by converting the
 *    int64 to double, so 9007199254740993 > 9007199254740992.0 holds.
 *    Reals compare as doubles: decimals that round to the same double are
 *    equal (972783798187987123879878123.18878137 and ...371 are one value).
 *  - multipleOf is an exact decimal test. Integers are tested with integer
 *    arithmetic. A real is taken as the shortest decimal that reads back as
 *    the same double (0.0075 is 75e-4, not 0.00749999...), and divisibility of
 *    those decimals is decided exactly, so 0.0075 is a multiple of 0.0001,
 *    0.00751 is not, and 1e308 is not a multiple of 0.123456789.
 *  - const, enum and uniqueItems use JSON equality: numbers are equal when
 *    their values are (1 == 1.0), objects regardless of key order.
 *
 * Regular expressions (pattern, patternProperties, format "regex") are
 * ECMA-262 translated to PCRE2 with PCRE2_UTF | PCRE2_DOLLAR_ENDONLY: \d, \w,
 * \s and their negations get ECMA's meanings (\d and \w ASCII only, \s with
 * the Unicode spaces), \uHHHH becomes \x{HHHH}, and escapes that ECMA does not
 * have (\A, \Z, \z, \Q, \h, ...) make the pattern invalid.
 *
 * Formats checked: date-time, date, time (RFC 3339), email, hostname, ipv4,
 * ipv6, uri, uri-reference, iri, iri-reference, uri-template, uuid, regex,
 * json-pointer, relative-json-pointer. Unknown formats are ignored.
 *
 * Recursion: evaluation depth (schema nesting plus $ref hops) is bounded by
 * SL_SCHEMA_MAX_DEPTH; a $ref loop that makes no progress in the instance
 * ends there, and sl_schema_validate returns -1 with the error
 * "schema evaluation exceeds depth N (a $ref loop?)". The work is bounded
 * too: a validation that evaluates more than SL_SCHEMA_MAX_STEPS (sub)schemas
 * (nested anyOf/allOf over $refs grow exponentially) returns -1 with
 * "schema too complex to evaluate (more than N steps)".
 */
#ifndef SL_SCHEMA_H
#define SL_SCHEMA_H

#include <stddef.h>

#include <jansson.h>

#define SL_SCHEMA_MAX_DEPTH 512
#define SL_SCHEMA_MAX_STEPS 10000000

typedef struct sl_schema sl_schema_t;

/* A remote $ref mapping: an absolute URI that starts with prefix is read from
 * the file dir + the rest of the URI (fragment excluded). For example
 * { "http://localhost:1234/", "/srv/remotes" } maps
 * http://localhost:1234/folder/a.json#/x to /srv/remotes/folder/a.json. */
struct sl_schema_ref {
	const char *prefix;
	const char *dir;
};

/* One validation error. Paths are JSON Pointers: instance_path ("" is the
 * whole instance, "/amount" a member) and schema_path, the keyword that failed
 * as a URI fragment of the schema document ("#/properties/amount/minimum"),
 * prefixed by the document URI when the keyword lives in another document.
 * message is lowercase, without a final period. Each field is truncated to
 * fit and always NUL-terminated. */
struct sl_schema_error {
	char instance_path[256];
	char schema_path[256];
	char message[256];
};

/* Reads a schema from the JSON file at path and compiles it with base URI
 * "file://" + the absolute path. refs (n_refs entries, may be NULL when 0) is
 * copied; the caller keeps ownership of it. Returns a new schema to be freed
 * with sl_schema_destroy, or NULL with "path: reason" in errbuf. */
sl_schema_t *sl_schema_load_file(const char *path, const struct sl_schema_ref *refs, size_t n_refs,
                                 char *errbuf, size_t errbuf_size);

/* Compiles schema (borrowed: the compiled schema takes its own reference and
 * the caller must not modify the document afterwards). base_uri (may be NULL)
 * is the URI that relative $id and $ref resolve against. Returns a new schema,
 * or NULL with the reason in errbuf (an invalid keyword value, an unresolvable
 * $ref, a regex that does not compile, out of memory). */
sl_schema_t *sl_schema_compile(json_t *schema, const char *base_uri, const struct sl_schema_ref *refs,
                               size_t n_refs, char *errbuf, size_t errbuf_size);

/* Frees a compiled schema; NULL is a no-op. No validation may be running on it. */
void sl_schema_destroy(sl_schema_t *s);

/* Validates instance (borrowed, not modified) against s. Returns 0 valid, 1
 * invalid, -1 internal error (out of memory, depth exceeded). When errs is not
 * NULL, up to max_errs errors are written to it: for 1 the reasons, for -1 one
 * entry with the internal error. *n_errs (OUT, may be NULL) is the number of
 * entries written, 0 when valid. Thread-safe: any number of threads may
 * validate against one schema at once. */
int sl_schema_validate(const sl_schema_t *s, const json_t *instance, struct sl_schema_error *errs,
                       size_t max_errs, size_t *n_errs);

/* Formats n errors as one line into buf:
 * "at /amount: must be >= 1 (schema #/properties/amount/minimum); at ...".
 * An error at the root reads "at root". Truncates to buf_size; this function
 * can't fail. */
void sl_schema_errors_format(const struct sl_schema_error *errs, size_t n, char *buf, size_t buf_size);

#endif
