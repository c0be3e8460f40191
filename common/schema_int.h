/* schema_int.h -- what the schema_*.c files share and nobody else sees.
 *
 * The compiled form of a schema is a graph of struct sl__schema_node (a $ref
 * is an edge to another node, so the graph may have cycles), allocated with
 * everything else a schema owns in one arena and freed at once by
 * sl_schema_destroy. After compilation nothing in it is written again, which
 * is what makes concurrent validation safe. Not for use outside common/schema*.c.
 */
#ifndef SL_SCHEMA_INT_H
#define SL_SCHEMA_INT_H

#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>

#include "schema.h"

/* Bits of sl__schema_node.types. */
enum {
	SL__T_NULL = 1 << 0,
	SL__T_BOOLEAN = 1 << 1,
	SL__T_OBJECT = 1 << 2,
	SL__T_ARRAY = 1 << 3,
	SL__T_NUMBER = 1 << 4,
	SL__T_STRING = 1 << 5,
	SL__T_INTEGER = 1 << 6,
};

enum sl__schema_format {
	SL__F_NONE = 0,
	SL__F_DATE_TIME,
	SL__F_DATE,
	SL__F_TIME,
	SL__F_EMAIL,
	SL__F_IDN_EMAIL,
	SL__F_HOSTNAME,
	SL__F_IDN_HOSTNAME,
	SL__F_IPV4,
	SL__F_IPV6,
	SL__F_URI,
	SL__F_URI_REFERENCE,
	SL__F_IRI,
	SL__F_IRI_REFERENCE,
	SL__F_URI_TEMPLATE,
	SL__F_UUID,
	SL__F_REGEX,
	SL__F_JSON_POINTER,
	SL__F_RELATIVE_JSON_POINTER,
};

/* A decimal m * 10^e with m free of trailing zeros (m == 0 means zero);
 * the sign is irrelevant to multipleOf and not kept. */
struct sl__schema_dec {
	uint64_t m;
	int e;
};

struct sl__schema_regex {
	pcre2_code *code;
	struct sl__schema_regex *next; /* the schema's list, for freeing */
};

struct sl__schema_node;

struct sl__schema_prop {
	const char *name;
	struct sl__schema_node *schema;
};

struct sl__schema_pprop {
	struct sl__schema_regex *re;
	const char *source;
	struct sl__schema_node *schema;
};

struct sl__schema_dep {
	const char *name;
	struct sl__schema_node *schema; /* schema dependency, or NULL */
	const char **required;          /* property dependency */
	size_t n_required;
};

/* Presence bits of sl__schema_node.has for keywords whose value alone
 * cannot say whether they were given. */
enum {
	SL__K_TYPE = 1 << 0,
	SL__K_MAX_LENGTH = 1 << 1,
	SL__K_MIN_LENGTH = 1 << 2,
	SL__K_MAX_ITEMS = 1 << 3,
	SL__K_MIN_ITEMS = 1 << 4,
	SL__K_MAX_PROPS = 1 << 5,
	SL__K_MIN_PROPS = 1 << 6,
	SL__K_UNIQUE = 1 << 7,
	SL__K_CONST = 1 << 8,
};

struct sl__schema_node {
	const char *loc;  /* schema location, "#/properties/a" */
	int boolean;      /* -1 a real schema, 0 false, 1 true */
	struct sl__schema_node *ref; /* $ref: nothing else applies */
	unsigned has;
	unsigned types;

	const json_t *const_value; /* borrowed from a document the schema owns */
	const json_t *enum_values;

	const json_t *minimum, *maximum, *ex_minimum, *ex_maximum;
	const json_t *multiple_of;
	struct sl__schema_dec multiple_of_dec;

	size_t max_length, min_length;
	struct sl__schema_regex *pattern;
	const char *pattern_source;
	enum sl__schema_format format;
	const char *format_name;

	struct sl__schema_node *items;       /* items as one schema */
	struct sl__schema_node **items_list; /* items as an array */
	size_t n_items_list;
	struct sl__schema_node *additional_items;
	size_t max_items, min_items;
	struct sl__schema_node *contains;

	size_t max_props, min_props;
	const char **required;
	size_t n_required;
	struct sl__schema_prop *props; /* sorted by name */
	size_t n_props;
	struct sl__schema_pprop *pprops;
	size_t n_pprops;
	struct sl__schema_node *additional_props;
	struct sl__schema_dep *deps;
	size_t n_deps;
	struct sl__schema_node *property_names;

	struct sl__schema_node *if_, *then_, *else_;
	struct sl__schema_node **all_of, **any_of, **one_of;
	size_t n_all_of, n_any_of, n_one_of;
	struct sl__schema_node *not_;
};

struct sl__schema_arena_chunk;

struct sl_schema {
	struct sl__schema_node *root;
	struct sl__schema_arena_chunk *arena;
	struct sl__schema_regex *regexes;
	json_t **docs; /* owned references: every document nodes point into */
	size_t n_docs;
};

/* Arena allocation, zeroed; freed with the schema. NULL when out of memory. */
void *sl__schema_alloc(struct sl_schema *s, size_t size);
char *sl__schema_strdup(struct sl_schema *s, const char *str);

/* Numbers (schema_num.c). */
int sl__schema_num_cmp(const json_t *a, const json_t *b);
int sl__schema_json_equal(const json_t *a, const json_t *b);
int sl__schema_dec_from_json(const json_t *v, struct sl__schema_dec *out);
int sl__schema_multiple_of(const json_t *v, const json_t *m, const struct sl__schema_dec *mdec);

/* Regular expressions (schema_regex.c). */
pcre2_code *sl__schema_regex_compile(const char *ecma, char *errbuf, size_t errbuf_size);
int sl__schema_regex_match(const pcre2_code *code, const char *subject, size_t len, pcre2_match_data **md);

/* Formats (schema_format.c). */
enum sl__schema_format sl__schema_format_lookup(const char *name);
int sl__schema_format_check(enum sl__schema_format f, const char *s, size_t len);

/* A schema resource: a document root, a subschema with an $id, or a
 * plain-name anchor ("...#foo"), found by its absolute URI. */
struct sl__schema_resource {
	const char *uri;  /* no fragment, except for a plain-name anchor */
	json_t *json;     /* borrowed from one of s->docs */
	const char *base; /* the base URI inside it */
	const char *loc;  /* its location for error messages, "uri#/pointer" */
	struct sl__schema_resource *next;
};

struct sl__schema_memo;

/* The state of one sl_schema_compile call; gone when it returns. */
struct sl__schema_compiler {
	struct sl_schema *s;
	const struct sl_schema_ref *refs;
	size_t n_refs;
	const char *root_uri; /* the root document's URI; locations in it omit it */
	struct sl__schema_resource *resources; /* in the arena */
	struct sl__schema_memo *memo;          /* malloc'd, (json, base) -> node */
	size_t n_memo, cap_memo;
	int depth;
	char *errbuf;
	size_t errbuf_size;
};

/* URIs and references (schema_ref.c). */
char *sl__schema_uri_resolve(struct sl_schema *s, const char *base, const char *ref);
int sl__schema_add_document(struct sl__schema_compiler *c, json_t *doc, const char *uri);
int sl__schema_ref_resolve(struct sl__schema_compiler *c, const char *base, const char *ref, const char *at,
                           json_t **out_json, const char **out_base, const char **out_loc);
extern const char sl__schema_draft07_uri[];
extern const char sl__schema_draft07_text[];

#endif
