/* schema.c -- compiling JSON Schema draft-07 documents (see schema.h).
 *
 * Compilation turns a jansson document into the node graph of schema_int.h:
 * every keyword is checked once here (so validation never meets a malformed
 * keyword), patterns are compiled, and every $ref is resolved to the node it
 * names. A node is memoised by (JSON value, base URI), which both shares the
 * work and ends recursion through $ref cycles. Validation is in
 * schema_validate.c; $id/$ref resolution in schema_ref.c.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema_int.h"

/* Arena: chunks of at least CHUNK bytes, freed together by sl_schema_destroy. */
#define CHUNK 8192

struct sl__schema_arena_chunk {
	struct sl__schema_arena_chunk *next;
	size_t used, size;
	_Alignas(max_align_t) unsigned char data[];
};

struct sl__schema_memo {
	const json_t *json;
	const char *base;
	struct sl__schema_node *node;
};

void *
sl__schema_alloc(struct sl_schema *s, size_t size)
{
	struct sl__schema_arena_chunk *ch = s->arena;
	size_t align = _Alignof(max_align_t), n;
	void *p;

	size = (size + align - 1) & ~(align - 1);
	if (ch == NULL || ch->size - ch->used < size) {
		n = size > CHUNK ? size : CHUNK;
		if ((ch = malloc(sizeof(*ch) + n)) == NULL)
			return NULL;
		ch->next = s->arena;
		ch->used = 0;
		ch->size = n;
		s->arena = ch;
	}
	p = ch->data + ch->used;
	ch->used += size;
	memset(p, 0, size);
	return p;
}

char *
sl__schema_strdup(struct sl_schema *s, const char *str)
{
	size_t n;
	char *p;

	if (str == NULL)
		return NULL;
	n = strlen(str) + 1;
	if ((p = sl__schema_alloc(s, n)) != NULL)
		memcpy(p, str, n);
	return p;
}

static void
set_error(struct sl__schema_compiler *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
set_error(struct sl__schema_compiler *c, const char *fmt, ...)
{
	va_list ap;

	if (c->errbuf == NULL || c->errbuf_size == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(c->errbuf, c->errbuf_size, fmt, ap);
	va_end(ap);
}

/* loc + "/" + tok (escaped per RFC 6901), in the arena. */
static const char *
sub_loc(struct sl__schema_compiler *c, const char *loc, const char *tok)
{
	size_t n = strlen(loc), i;
	char *p = sl__schema_alloc(c->s, n + 2 * strlen(tok) + 2);

	if (p == NULL)
		return NULL;
	memcpy(p, loc, n);
	p[n++] = '/';
	for (i = 0; tok[i] != '\0'; i++) {
		if (tok[i] == '~' || tok[i] == '/') {
			p[n++] = '~';
			p[n++] = tok[i] == '~' ? '0' : '1';
		} else {
			p[n++] = tok[i];
		}
	}
	p[n] = '\0';
	return p;
}

static size_t
hash_ptr(const void *p)
{
	uintptr_t x = (uintptr_t)p;

	x ^= x >> 17;
	x *= 0x9E3779B97F4A7C15ull;
	return (size_t)(x ^ (x >> 29));
}

static struct sl__schema_node *
memo_get(struct sl__schema_compiler *c, const json_t *v, const char *base)
{
	size_t i;

	if (c->cap_memo == 0)
		return NULL;
	for (i = hash_ptr(v) & (c->cap_memo - 1); c->memo[i].json != NULL; i = (i + 1) & (c->cap_memo - 1))
		if (c->memo[i].json == v && strcmp(c->memo[i].base, base) == 0)
			return c->memo[i].node;
	return NULL;
}

static int
memo_put(struct sl__schema_compiler *c, const json_t *v, const char *base, struct sl__schema_node *node)
{
	size_t i;

	if (2 * (c->n_memo + 1) > c->cap_memo) {
		struct sl__schema_memo *old = c->memo;
		size_t old_cap = c->cap_memo, j;

		c->cap_memo = old_cap ? old_cap * 2 : 64;
		if ((c->memo = calloc(c->cap_memo, sizeof(*c->memo))) == NULL) {
			c->memo = old;
			c->cap_memo = old_cap;
			return -1;
		}
		c->n_memo = 0;
		for (j = 0; j < old_cap; j++)
			if (old[j].json != NULL)
				memo_put(c, old[j].json, old[j].base, old[j].node);
		free(old);
	}
	for (i = hash_ptr(v) & (c->cap_memo - 1); c->memo[i].json != NULL; i = (i + 1) & (c->cap_memo - 1))
		;
	c->memo[i].json = v;
	c->memo[i].base = base;
	c->memo[i].node = node;
	c->n_memo++;
	return 0;
}

static struct sl__schema_node *compile_node(struct sl__schema_compiler *c, json_t *v, const char *base,
                                            const char *loc);

/* Compiles member kw of schema object v, if present, into *out. */
static int
child(struct sl__schema_compiler *c, json_t *v, const char *kw, const char *base, const char *loc,
      struct sl__schema_node **out)
{
	json_t *m = json_object_get(v, kw);
	const char *cloc;

	*out = NULL;
	if (m == NULL)
		return 0;
	if ((cloc = sub_loc(c, loc, kw)) == NULL) {
		set_error(c, "out of memory");
		return -1;
	}
	return (*out = compile_node(c, m, base, cloc)) == NULL ? -1 : 0;
}

/* Compiles an array of schemas (allOf, anyOf, oneOf, items). */
static int
child_list(struct sl__schema_compiler *c, json_t *v, const char *kw, const char *base, const char *loc,
           int nonempty, struct sl__schema_node ***out, size_t *n_out)
{
	json_t *m = json_object_get(v, kw), *e;
	const char *kloc, *eloc;
	char idx[24];
	size_t i;

	*out = NULL;
	*n_out = 0;
	if (m == NULL)
		return 0;
	if (!json_is_array(m) || (nonempty && json_array_size(m) == 0)) {
		set_error(c, "%s/%s: must be %sarray of schemas", loc, kw, nonempty ? "a non-empty " : "an ");
		return -1;
	}
	if ((kloc = sub_loc(c, loc, kw)) == NULL ||
	    (*out = sl__schema_alloc(c->s, (json_array_size(m) + 1) * sizeof(**out))) == NULL)
		goto oom;
	json_array_foreach(m, i, e) {
		snprintf(idx, sizeof(idx), "%zu", i);
		if ((eloc = sub_loc(c, kloc, idx)) == NULL)
			goto oom;
		if (((*out)[i] = compile_node(c, e, base, eloc)) == NULL)
			return -1;
	}
	*n_out = json_array_size(m);
	return 0;
oom:
	set_error(c, "out of memory");
	return -1;
}

/* Reads a non-negative integer keyword (an integral real counts, as the
 * meta-schema's "integer" allows 1.0). Returns 1 present, 0 absent, -1 bad. */
static int
nonneg(struct sl__schema_compiler *c, json_t *v, const char *kw, const char *loc, size_t *out)
{
	json_t *m = json_object_get(v, kw);
	double d;

	if (m == NULL)
		return 0;
	if (json_is_integer(m) && json_integer_value(m) >= 0) {
		*out = (uintmax_t)json_integer_value(m) > SIZE_MAX ? SIZE_MAX : (size_t)json_integer_value(m);
		return 1;
	}
	if (json_is_real(m) && (d = json_real_value(m)) >= 0 && floor(d) == d) {
		*out = d >= (double)SIZE_MAX ? SIZE_MAX : (size_t)d;
		return 1;
	}
	set_error(c, "%s/%s: must be a non-negative integer", loc, kw);
	return -1;
}

static const json_t *
number_kw(struct sl__schema_compiler *c, json_t *v, const char *kw, const char *loc, int *err)
{
	json_t *m = json_object_get(v, kw);

	if (m != NULL && !json_is_number(m)) {
		set_error(c, "%s/%s: must be a number", loc, kw);
		*err = 1;
	}
	return m;
}

static struct sl__schema_regex *
regex_new(struct sl__schema_compiler *c, const char *src, const char *loc)
{
	struct sl__schema_regex *re;
	char why[160];
	pcre2_code *code;

	if ((code = sl__schema_regex_compile(src, why, sizeof(why))) == NULL) {
		set_error(c, "%s: invalid regular expression \"%s\": %s", loc, src, why);
		return NULL;
	}
	if ((re = sl__schema_alloc(c->s, sizeof(*re))) == NULL) {
		pcre2_code_free(code);
		set_error(c, "out of memory");
		return NULL;
	}
	re->code = code;
	re->next = c->s->regexes; /* now owned by the schema */
	c->s->regexes = re;
	return re;
}

static int
parse_type(struct sl__schema_compiler *c, struct sl__schema_node *n, json_t *t, const char *loc)
{
	static const char *const names[] = { "null", "boolean", "object", "array", "number", "string", "integer" };
	json_t *one = t;
	size_t i, k;

	if (!json_is_string(t) && !json_is_array(t))
		goto bad;
	for (k = 0; json_is_string(t) ? k < 1 : k < json_array_size(t); k++) {
		if (json_is_array(t))
			one = json_array_get(t, k);
		if (!json_is_string(one))
			goto bad;
		for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (strcmp(json_string_value(one), names[i]) == 0)
				break;
		if (i == sizeof(names) / sizeof(names[0]))
			goto bad;
		n->types |= 1u << i;
	}
	n->has |= SL__K_TYPE;
	return 0;
bad:
	set_error(c, "%s/type: must be a type name or an array of type names", loc);
	return -1;
}

/* Reads an array of strings (required, property dependencies). */
static int
string_list(struct sl__schema_compiler *c, json_t *m, const char *where, const char ***out, size_t *n_out)
{
	json_t *e;
	size_t i;

	*out = NULL;
	*n_out = 0;
	if (!json_is_array(m)) {
		set_error(c, "%s: must be an array of strings", where);
		return -1;
	}
	if ((*out = sl__schema_alloc(c->s, (json_array_size(m) + 1) * sizeof(char *))) == NULL) {
		set_error(c, "out of memory");
		return -1;
	}
	json_array_foreach(m, i, e) {
		if (!json_is_string(e)) {
			set_error(c, "%s: must be an array of strings", where);
			return -1;
		}
		(*out)[i] = json_string_value(e); /* borrowed from the document */
	}
	*n_out = json_array_size(m);
	return 0;
}

static int
prop_cmp(const void *a, const void *b)
{
	return strcmp(((const struct sl__schema_prop *)a)->name, ((const struct sl__schema_prop *)b)->name);
}

/* properties, patternProperties and dependencies: objects keyed by name. */
static int
parse_maps(struct sl__schema_compiler *c, struct sl__schema_node *n, json_t *v, const char *base,
           const char *loc)
{
	const char *key, *kloc, *eloc;
	json_t *m, *e;
	size_t i;

	if ((m = json_object_get(v, "properties")) != NULL) {
		if (!json_is_object(m) || (kloc = sub_loc(c, loc, "properties")) == NULL)
			goto bad_props;
		if ((n->props = sl__schema_alloc(c->s, (json_object_size(m) + 1) * sizeof(*n->props))) == NULL)
			goto oom;
		i = 0;
		json_object_foreach(m, key, e) {
			n->props[i].name = key;
			if ((eloc = sub_loc(c, kloc, key)) == NULL)
				goto oom;
			if ((n->props[i++].schema = compile_node(c, e, base, eloc)) == NULL)
				return -1;
		}
		n->n_props = i;
		qsort(n->props, n->n_props, sizeof(*n->props), prop_cmp);
	}
	if ((m = json_object_get(v, "patternProperties")) != NULL) {
		if (!json_is_object(m) || (kloc = sub_loc(c, loc, "patternProperties")) == NULL)
			goto bad_props;
		if ((n->pprops = sl__schema_alloc(c->s, (json_object_size(m) + 1) * sizeof(*n->pprops))) == NULL)
			goto oom;
		i = 0;
		json_object_foreach(m, key, e) {
			if ((eloc = sub_loc(c, kloc, key)) == NULL)
				goto oom;
			n->pprops[i].source = key;
			if ((n->pprops[i].re = regex_new(c, key, eloc)) == NULL ||
			    (n->pprops[i++].schema = compile_node(c, e, base, eloc)) == NULL)
				return -1;
		}
		n->n_pprops = i;
	}
	if ((m = json_object_get(v, "dependencies")) != NULL) {
		if (!json_is_object(m) || (kloc = sub_loc(c, loc, "dependencies")) == NULL)
			goto bad_props;
		if ((n->deps = sl__schema_alloc(c->s, (json_object_size(m) + 1) * sizeof(*n->deps))) == NULL)
			goto oom;
		i = 0;
		json_object_foreach(m, key, e) {
			struct sl__schema_dep *d = &n->deps[i++];

			d->name = key;
			if ((eloc = sub_loc(c, kloc, key)) == NULL)
				goto oom;
			if (json_is_array(e)) {
				if (string_list(c, e, eloc, &d->required, &d->n_required) < 0)
					return -1;
			} else if ((d->schema = compile_node(c, e, base, eloc)) == NULL) {
				return -1;
			}
		}
		n->n_deps = i;
	}
	return 0;
bad_props:
	set_error(c, "%s: properties, patternProperties and dependencies must be objects", loc);
	return -1;
oom:
	set_error(c, "out of memory");
	return -1;
}

/* The keywords of a schema object (not a $ref). */
static int
parse_keywords(struct sl__schema_compiler *c, struct sl__schema_node *n, json_t *v, const char *base,
               const char *loc)
{
	json_t *m;
	int bad = 0, r;

	if ((m = json_object_get(v, "type")) != NULL && parse_type(c, n, m, loc) < 0)
		return -1;
	if ((m = json_object_get(v, "enum")) != NULL) {
		if (!json_is_array(m)) {
			set_error(c, "%s/enum: must be an array", loc);
			return -1;
		}
		n->enum_values = m;
	}
	if ((m = json_object_get(v, "const")) != NULL) {
		n->const_value = m;
		n->has |= SL__K_CONST;
	}
	n->minimum = number_kw(c, v, "minimum", loc, &bad);
	n->maximum = number_kw(c, v, "maximum", loc, &bad);
	n->ex_minimum = number_kw(c, v, "exclusiveMinimum", loc, &bad);
	n->ex_maximum = number_kw(c, v, "exclusiveMaximum", loc, &bad);
	n->multiple_of = number_kw(c, v, "multipleOf", loc, &bad);
	if (bad)
		return -1;
	if (n->multiple_of != NULL) {
		struct sl__schema_dec d;

		if (sl__schema_dec_from_json(n->multiple_of, &d) < 0 || d.m == 0 ||
		    (json_is_integer(n->multiple_of) ? json_integer_value(n->multiple_of) <= 0
		                                     : json_real_value(n->multiple_of) <= 0)) {
			set_error(c, "%s/multipleOf: must be a number greater than 0", loc);
			return -1;
		}
		n->multiple_of_dec = d;
	}
#define NONNEG(kw, field, bit)                                          \
	do {                                                            \
		if ((r = nonneg(c, v, kw, loc, &n->field)) < 0)         \
			return -1;                                      \
		if (r > 0)                                              \
			n->has |= (bit);                                \
	} while (0)
	NONNEG("maxLength", max_length, SL__K_MAX_LENGTH);
	NONNEG("minLength", min_length, SL__K_MIN_LENGTH);
	NONNEG("maxItems", max_items, SL__K_MAX_ITEMS);
	NONNEG("minItems", min_items, SL__K_MIN_ITEMS);
	NONNEG("maxProperties", max_props, SL__K_MAX_PROPS);
	NONNEG("minProperties", min_props, SL__K_MIN_PROPS);
#undef NONNEG
	if ((m = json_object_get(v, "pattern")) != NULL) {
		if (!json_is_string(m)) {
			set_error(c, "%s/pattern: must be a string", loc);
			return -1;
		}
		n->pattern_source = json_string_value(m);
		if ((n->pattern = regex_new(c, n->pattern_source, sub_loc(c, loc, "pattern"))) == NULL)
			return -1;
	}
	if ((m = json_object_get(v, "format")) != NULL) {
		if (!json_is_string(m)) {
			set_error(c, "%s/format: must be a string", loc);
			return -1;
		}
		n->format = sl__schema_format_lookup(json_string_value(m));
		n->format_name = json_string_value(m);
	}
	if ((m = json_object_get(v, "uniqueItems")) != NULL) {
		if (!json_is_boolean(m)) {
			set_error(c, "%s/uniqueItems: must be a boolean", loc);
			return -1;
		}
		if (json_is_true(m))
			n->has |= SL__K_UNIQUE;
	}
	if ((m = json_object_get(v, "required")) != NULL &&
	    string_list(c, m, sub_loc(c, loc, "required"), &n->required, &n->n_required) < 0)
		return -1;
	if (json_is_array(json_object_get(v, "items"))) {
		if (child_list(c, v, "items", base, loc, 0, &n->items_list, &n->n_items_list) < 0)
			return -1;
	} else if (child(c, v, "items", base, loc, &n->items) < 0) {
		return -1;
	}
	if (child(c, v, "additionalItems", base, loc, &n->additional_items) < 0 ||
	    child(c, v, "contains", base, loc, &n->contains) < 0 ||
	    child(c, v, "additionalProperties", base, loc, &n->additional_props) < 0 ||
	    child(c, v, "propertyNames", base, loc, &n->property_names) < 0 ||
	    child(c, v, "if", base, loc, &n->if_) < 0 || child(c, v, "then", base, loc, &n->then_) < 0 ||
	    child(c, v, "else", base, loc, &n->else_) < 0 || child(c, v, "not", base, loc, &n->not_) < 0 ||
	    child_list(c, v, "allOf", base, loc, 1, &n->all_of, &n->n_all_of) < 0 ||
	    child_list(c, v, "anyOf", base, loc, 1, &n->any_of, &n->n_any_of) < 0 ||
	    child_list(c, v, "oneOf", base, loc, 1, &n->one_of, &n->n_one_of) < 0)
		return -1;
	return parse_maps(c, n, v, base, loc);
}

/* Compiles schema v at location loc, enclosed by base URI base. Returns the
 * node (in the arena, possibly one compiled before), or NULL with errbuf set. */
static struct sl__schema_node *
compile_node(struct sl__schema_compiler *c, json_t *v, const char *base, const char *loc)
{
	struct sl__schema_node *n;
	const char *inner, *tbase, *tloc;
	json_t *ref, *target;

	if (loc == NULL)
		goto oom;
	if (!json_is_object(v) && !json_is_boolean(v)) {
		set_error(c, "%s: a schema must be an object or a boolean", loc);
		return NULL;
	}
	/* jansson's true and false are singletons: never memoise them. */
	if (json_is_object(v) && (n = memo_get(c, v, base)) != NULL)
		return n;
	if (++c->depth > SL_SCHEMA_MAX_DEPTH) {
		set_error(c, "%s: schema nesting exceeds depth %d", loc, SL_SCHEMA_MAX_DEPTH);
		return NULL;
	}
	if ((n = sl__schema_alloc(c->s, sizeof(*n))) == NULL)
		goto oom;
	n->loc = loc;
	n->boolean = json_is_boolean(v) ? json_is_true(v) : -1;
	if (n->boolean >= 0)
		goto out;
	if (memo_put(c, v, base, n) < 0)
		goto oom;
	if ((ref = json_object_get(v, "$ref")) != NULL) {
		/* Draft-07: a $ref's siblings are ignored, $id included. */
		if (!json_is_string(ref)) {
			set_error(c, "%s/$ref: must be a string", loc);
			return NULL;
		}
		if (sl__schema_ref_resolve(c, base, json_string_value(ref), loc, &target, &tbase, &tloc) < 0)
			return NULL;
		if ((n->ref = compile_node(c, target, tbase, tloc)) == NULL)
			return NULL;
		goto out;
	}
	inner = base;
	if ((ref = json_object_get(v, "$id")) != NULL) {
		char *h;

		if (!json_is_string(ref)) {
			set_error(c, "%s/$id: must be a string", loc);
			return NULL;
		}
		if ((h = sl__schema_uri_resolve(c->s, base, json_string_value(ref))) == NULL)
			goto oom;
		if ((inner = h) != NULL && (h = strchr(h, '#')) != NULL)
			*h = '\0';
	}
	if (parse_keywords(c, n, v, inner, loc) < 0)
		return NULL;
out:
	c->depth--;
	return n;
oom:
	set_error(c, "out of memory");
	return NULL;
}

sl_schema_t *
sl_schema_compile(json_t *schema, const char *base_uri, const struct sl_schema_ref *refs, size_t n_refs,
                  char *errbuf, size_t errbuf_size)
{
	struct sl__schema_compiler c;
	struct sl_schema *s;

	if (errbuf != NULL && errbuf_size > 0)
		errbuf[0] = '\0';
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		snprintf(errbuf, errbuf_size, "out of memory");
		return NULL;
	}
	memset(&c, 0, sizeof(c));
	c.s = s;
	c.refs = refs;
	c.n_refs = n_refs;
	c.root_uri = base_uri ? base_uri : "";
	c.errbuf = errbuf;
	c.errbuf_size = errbuf_size;
	if (schema == NULL) {
		set_error(&c, "no schema");
		goto err;
	}
	if ((c.root_uri = sl__schema_strdup(s, c.root_uri)) == NULL) {
		set_error(&c, "out of memory");
		goto err;
	}
	/* The schema keeps its own reference: nodes point into the document. */
	if (sl__schema_add_document(&c, json_incref(schema), c.root_uri) < 0)
		goto err;
	if ((s->root = compile_node(&c, schema, c.root_uri, "#")) == NULL)
		goto err;
	free(c.memo);
	return s;
err:
	free(c.memo);
	sl_schema_destroy(s);
	return NULL;
}

sl_schema_t *
sl_schema_load_file(const char *path, const struct sl_schema_ref *refs, size_t n_refs, char *errbuf,
                    size_t errbuf_size)
{
	char abs[PATH_MAX], *uri = NULL, why[512];
	json_error_t jerr;
	json_t *doc;
	sl_schema_t *s = NULL;
	size_t flags = JSON_DECODE_ANY | JSON_REJECT_DUPLICATES;

	doc = json_load_file(path, flags, &jerr);
	/* An integer beyond 64 bits in a schema (a bound, an enum value) is
	 * still a number: retry reading all integers as doubles. */
	if (doc == NULL && jerr.position > 0 && strstr(jerr.text, "too big") != NULL)
		doc = json_load_file(path, flags | JSON_DECODE_INT_AS_REAL, &jerr);
	if (doc == NULL) {
		if (jerr.line > 0)
			snprintf(errbuf, errbuf_size, "%s:%d: %s", path, jerr.line, jerr.text);
		else
			snprintf(errbuf, errbuf_size, "%s: %s", path, jerr.text);
		goto out;
	}
	if (realpath(path, abs) == NULL) {
		snprintf(errbuf, errbuf_size, "%s: could not resolve path: %s", path, strerror(errno));
		goto out;
	}
	if (asprintf(&uri, "file://%s", abs) < 0) {
		uri = NULL;
		snprintf(errbuf, errbuf_size, "%s: out of memory", path);
		goto out;
	}
	if ((s = sl_schema_compile(doc, uri, refs, n_refs, why, sizeof(why))) == NULL)
		snprintf(errbuf, errbuf_size, "%s: %s", path, why);
out:
	json_decref(doc);
	free(uri);
	return s;
}

void
sl_schema_destroy(sl_schema_t *s)
{
	struct sl__schema_arena_chunk *ch, *next;
	struct sl__schema_regex *re;
	size_t i;

	if (s == NULL)
		return;
	for (re = s->regexes; re != NULL; re = re->next)
		pcre2_code_free(re->code);
	for (i = 0; i < s->n_docs; i++)
		json_decref(s->docs[i]);
	free(s->docs);
	for (ch = s->arena; ch != NULL; ch = next) {
		next = ch->next;
		free(ch);
	}
	free(s);
}

void
sl_schema_errors_format(const struct sl_schema_error *errs, size_t n, char *buf, size_t buf_size)
{
	size_t i, len = 0;
	int w;

	if (buf == NULL || buf_size == 0)
		return;
	buf[0] = '\0';
	for (i = 0; i < n && len < buf_size; i++) {
		w = snprintf(buf + len, buf_size - len, "%sat %s: %s (schema %s)", i ? "; " : "",
		             errs[i].instance_path[0] ? errs[i].instance_path : "root", errs[i].message,
		             errs[i].schema_path);
		if (w < 0)
			break;
		len += (size_t)w;
	}
}
