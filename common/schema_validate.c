/* schema_validate.c -- evaluating an instance against a compiled schema.
 *
 * A depth-first walk of the node graph alongside the instance. The compiled
 * schema is only read; everything that changes during a walk (paths, error
 * count, depth, PCRE2 match data) lives in a struct vctx on the caller's
 * stack, which is what makes sl_schema_validate safe from many threads.
 * Errors are collected only where they are final: inside anyOf, oneOf, not,
 * if and contains, evaluation is "quiet" and stops at the first failure.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "schema_int.h"
#include "text.h"

struct vctx {
	struct sl_schema_error *errs; /* NULL: nothing is collected */
	size_t max_errs, n_errs;
	int quiet;                    /* > 0 inside a quiet subschema */
	int depth;
	unsigned long steps;          /* validate() calls so far, bounded by SL_SCHEMA_MAX_STEPS */
	int internal;                 /* an internal error: abandon the walk */
	char internal_msg[256];
	char ipath[1024];             /* instance location, JSON Pointer */
	size_t ilen;
	pcre2_match_data *md;         /* created on first pattern match */
};

/* Whether a failure ends the current schema at once: when nothing more will
 * be reported (quiet, or the error array is full) the verdict is all that is
 * left to compute. */
static int
stop(const struct vctx *x)
{
	return x->quiet > 0 || x->errs == NULL || x->n_errs >= x->max_errs || x->internal;
}

static void
fail(struct vctx *x, const struct sl__schema_node *n, const char *kw, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void
fail(struct vctx *x, const struct sl__schema_node *n, const char *kw, const char *fmt, ...)
{
	struct sl_schema_error *e;
	va_list ap;

	if (x->quiet > 0 || x->errs == NULL || x->n_errs >= x->max_errs)
		return;
	e = &x->errs[x->n_errs++];
	/* The path holds the instance's keys: escaped, and cut to the field's
	 * size at a character boundary (a prefix still locates it). */
	sl_text_escape_untrusted(x->ipath, x->ilen, e->instance_path, sizeof(e->instance_path));
	snprintf(e->schema_path, sizeof(e->schema_path), "%s%s%s", n->loc, kw ? "/" : "", kw ? kw : "");
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
}

static void
internal_error(struct vctx *x, const char *msg)
{
	if (!x->internal)
		snprintf(x->internal_msg, sizeof(x->internal_msg), "%s", msg);
	x->internal = 1;
}

/* Appends "/" + token (escaped) to the instance path; returns the length to
 * restore with pop(). A path too long to keep is cut, never overrun. */
static size_t
push(struct vctx *x, const char *tok)
{
	size_t old = x->ilen, n = x->ilen;

	if (x->errs == NULL || x->quiet > 0)
		return old;
	if (n + 1 < sizeof(x->ipath))
		x->ipath[n++] = '/';
	for (; *tok != '\0' && n + 2 < sizeof(x->ipath); tok++) {
		if (*tok == '~' || *tok == '/') {
			x->ipath[n++] = '~';
			x->ipath[n++] = *tok == '~' ? '0' : '1';
		} else {
			x->ipath[n++] = *tok;
		}
	}
	x->ipath[n] = '\0';
	x->ilen = n;
	return old;
}

static size_t
push_index(struct vctx *x, size_t i)
{
	char buf[24];

	if (x->errs == NULL || x->quiet > 0)
		return x->ilen;
	snprintf(buf, sizeof(buf), "%zu", i);
	return push(x, buf);
}

static void
pop(struct vctx *x, size_t old)
{
	x->ilen = old;
	x->ipath[old] = '\0';
}

static void
fmt_num(const json_t *v, char *buf, size_t size)
{
	if (json_is_integer(v)) {
		snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return;
	}
	snprintf(buf, size, "%.15g", json_real_value(v));
	if (strtod(buf, NULL) != json_real_value(v))
		snprintf(buf, size, "%.17g", json_real_value(v));
}

static unsigned
type_bit(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_NULL: return SL__T_NULL;
	case JSON_TRUE:
	case JSON_FALSE: return SL__T_BOOLEAN;
	case JSON_OBJECT: return SL__T_OBJECT;
	case JSON_ARRAY: return SL__T_ARRAY;
	case JSON_STRING: return SL__T_STRING;
	case JSON_INTEGER:
	case JSON_REAL:
		/* The handlers read integers by the same rule (json.h). */
		return SL__T_NUMBER | (sl_json_is_integral(v) ? SL__T_INTEGER : 0);
	}
	return 0;
}

static void
fmt_types(unsigned types, char *buf, size_t size)
{
	static const char *const names[] = { "null", "boolean", "object", "array", "number", "string", "integer" };
	size_t i, len = 0;

	buf[0] = '\0';
	for (i = 0; i < 7 && len < size; i++)
		if (types & (1u << i))
			len += (size_t)snprintf(buf + len, size - len, "%s%s", len ? " or " : "", names[i]);
}

static int validate(struct vctx *x, const struct sl__schema_node *n, const json_t *inst);

/* Escapes an instance's key for a message into buf (sl_text_escape_untrusted),
 * with "..." when it was cut. Returns buf. */
static const char *
key_text(const char *key, char *buf, size_t size)
{
	size_t len = strlen(key);

	if (sl_text_escape_untrusted(key, len, buf, size - 3) < len)
		strcat(buf, "...");
	return buf;
}

/* Evaluates n quietly: only the verdict, no errors. */
static int
quiet(struct vctx *x, const struct sl__schema_node *n, const json_t *inst)
{
	int ok;

	x->quiet++;
	ok = validate(x, n, inst);
	x->quiet--;
	return ok;
}

/* Code points in a UTF-8 string: bytes that do not continue a sequence. */
static size_t
utf8_len(const char *s, size_t n)
{
	size_t i, cps = 0;

	for (i = 0; i < n; i++)
		cps += ((unsigned char)s[i] & 0xC0) != 0x80;
	return cps;
}

#define FAIL(kw, ...)                                \
	do {                                         \
		ok = 0;                              \
		fail(x, n, kw, __VA_ARGS__);         \
		if (stop(x))                         \
			return 0;                    \
	} while (0)

/* A sub-evaluation that reported its own errors. */
#define SUB(expr)                                    \
	do {                                         \
		if (!(expr)) {                       \
			ok = 0;                      \
			if (stop(x))                 \
				return 0;            \
		}                                    \
	} while (0)

static int
validate_number(struct vctx *x, const struct sl__schema_node *n, const json_t *inst)
{
	char num[40];
	int ok = 1;

	if (n->minimum && sl__schema_num_cmp(inst, n->minimum) < 0) {
		fmt_num(n->minimum, num, sizeof(num));
		FAIL("minimum", "must be >= %s", num);
	}
	if (n->maximum && sl__schema_num_cmp(inst, n->maximum) > 0) {
		fmt_num(n->maximum, num, sizeof(num));
		FAIL("maximum", "must be <= %s", num);
	}
	if (n->ex_minimum && sl__schema_num_cmp(inst, n->ex_minimum) <= 0) {
		fmt_num(n->ex_minimum, num, sizeof(num));
		FAIL("exclusiveMinimum", "must be > %s", num);
	}
	if (n->ex_maximum && sl__schema_num_cmp(inst, n->ex_maximum) >= 0) {
		fmt_num(n->ex_maximum, num, sizeof(num));
		FAIL("exclusiveMaximum", "must be < %s", num);
	}
	if (n->multiple_of && !sl__schema_multiple_of(inst, n->multiple_of, &n->multiple_of_dec)) {
		fmt_num(n->multiple_of, num, sizeof(num));
		FAIL("multipleOf", "must be a multiple of %s", num);
	}
	return ok;
}

static int
validate_string(struct vctx *x, const struct sl__schema_node *n, const json_t *inst)
{
	const char *s = json_string_value(inst);
	size_t len = json_string_length(inst), cps;
	int ok = 1, m;

	if (n->has & (SL__K_MAX_LENGTH | SL__K_MIN_LENGTH)) {
		cps = utf8_len(s, len);
		if ((n->has & SL__K_MAX_LENGTH) && cps > n->max_length)
			FAIL("maxLength", "must be at most %zu characters long", n->max_length);
		if ((n->has & SL__K_MIN_LENGTH) && cps < n->min_length)
			FAIL("minLength", "must be at least %zu characters long", n->min_length);
	}
	if (n->pattern) {
		if ((m = sl__schema_regex_match(n->pattern->code, s, len, &x->md)) < 0) {
			internal_error(x, "could not match a pattern (out of memory or match limit)");
			return 0;
		}
		if (m == 0)
			FAIL("pattern", "must match pattern \"%s\"", n->pattern_source);
	}
	if (n->format != SL__F_NONE && !sl__schema_format_check(n->format, s, len))
		FAIL("format", "must be a valid %s", n->format_name);
	return ok;
}

static int
validate_array(struct vctx *x, const struct sl__schema_node *n, const json_t *inst)
{
	size_t size = json_array_size(inst), i, j, old;
	int ok = 1, found;

	if ((n->has & SL__K_MAX_ITEMS) && size > n->max_items)
		FAIL("maxItems", "must have at most %zu items", n->max_items);
	if ((n->has & SL__K_MIN_ITEMS) && size < n->min_items)
		FAIL("minItems", "must have at least %zu items", n->min_items);
	if (n->has & SL__K_UNIQUE) {
		for (i = 0; i < size; i++)
			for (j = i + 1; j < size; j++)
				if (sl__schema_json_equal(json_array_get(inst, i), json_array_get(inst, j)))
					FAIL("uniqueItems", "must not contain duplicate items (%zu and %zu are equal)", i, j);
	}
	if (n->items != NULL) {
		for (i = 0; i < size; i++) {
			old = push_index(x, i);
			found = validate(x, n->items, json_array_get(inst, i));
			pop(x, old);
			SUB(found);
		}
	} else if (n->items_list != NULL) {
		for (i = 0; i < size && i < n->n_items_list; i++) {
			old = push_index(x, i);
			found = validate(x, n->items_list[i], json_array_get(inst, i));
			pop(x, old);
			SUB(found);
		}
		if (n->additional_items != NULL && size > n->n_items_list) {
			if (n->additional_items->boolean == 0)
				FAIL("additionalItems", "must have at most %zu items", n->n_items_list);
			for (i = n->n_items_list; n->additional_items->boolean != 0 && i < size; i++) {
				old = push_index(x, i);
				found = validate(x, n->additional_items, json_array_get(inst, i));
				pop(x, old);
				SUB(found);
			}
		}
	}
	if (n->contains != NULL) {
		for (i = 0, found = 0; i < size && !found && !x->internal; i++)
			found = quiet(x, n->contains, json_array_get(inst, i));
		if (!found)
			FAIL("contains", "must contain at least one item that matches contains");
	}
	return ok;
}

static const struct sl__schema_prop *
find_prop(const struct sl__schema_node *n, const char *name)
{
	size_t lo = 0, hi = n->n_props, mid;
	int c;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if ((c = strcmp(name, n->props[mid].name)) == 0)
			return &n->props[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

static int
validate_object(struct vctx *x, const struct sl__schema_node *n, const json_t *inst)
{
	size_t size = json_object_size(inst), i, k, old;
	const struct sl__schema_prop *p;
	const char *key;
	char kbuf[128];
	json_t *val;
	int ok = 1, matched, r;

	if ((n->has & SL__K_MAX_PROPS) && size > n->max_props)
		FAIL("maxProperties", "must have at most %zu properties", n->max_props);
	if ((n->has & SL__K_MIN_PROPS) && size < n->min_props)
		FAIL("minProperties", "must have at least %zu properties", n->min_props);
	for (i = 0; i < n->n_required; i++)
		if (json_object_get(inst, n->required[i]) == NULL)
			FAIL("required", "must have required property \"%s\"", n->required[i]);
	for (i = 0; i < n->n_deps; i++) {
		const struct sl__schema_dep *d = &n->deps[i];

		if (json_object_get(inst, d->name) == NULL)
			continue;
		if (d->schema != NULL) {
			SUB(validate(x, d->schema, inst));
			continue;
		}
		for (k = 0; k < d->n_required; k++)
			if (json_object_get(inst, d->required[k]) == NULL)
				FAIL("dependencies", "must have property \"%s\" when property \"%s\" is present",
				     d->required[k], d->name);
	}
	if (n->n_props == 0 && n->n_pprops == 0 && n->additional_props == NULL && n->property_names == NULL)
		return ok;
	json_object_foreach((json_t *)inst, key, val) {
		matched = 0;
		if (n->property_names != NULL) {
			json_t *name = json_string(key);

			if (name == NULL) {
				internal_error(x, "out of memory");
				return 0;
			}
			r = quiet(x, n->property_names, name);
			json_decref(name);
			if (!r)
				FAIL("propertyNames", "property name \"%s\" does not match propertyNames",
				     key_text(key, kbuf, sizeof(kbuf)));
		}
		old = push(x, key);
		if ((p = find_prop(n, key)) != NULL) {
			matched = 1;
			r = validate(x, p->schema, val);
			if (!r && stop(x)) {
				pop(x, old);
				return 0;
			}
			ok &= r;
		}
		for (k = 0; k < n->n_pprops; k++) {
			r = sl__schema_regex_match(n->pprops[k].re->code, key, strlen(key), &x->md);
			if (r < 0) {
				internal_error(x, "could not match a pattern (out of memory or match limit)");
				return 0;
			}
			if (r == 0)
				continue;
			matched = 1;
			r = validate(x, n->pprops[k].schema, val);
			if (!r && stop(x)) {
				pop(x, old);
				return 0;
			}
			ok &= r;
		}
		pop(x, old);
		if (matched || n->additional_props == NULL)
			continue;
		if (n->additional_props->boolean == 0) {
			FAIL("additionalProperties", "must not have additional property \"%s\"",
			     key_text(key, kbuf, sizeof(kbuf)));
			continue;
		}
		old = push(x, key);
		r = validate(x, n->additional_props, val);
		pop(x, old);
		SUB(r);
	}
	return ok;
}

static int
validate_body(struct vctx *x, const struct sl__schema_node *n, const json_t *inst)
{
	unsigned t;
	char buf[96];
	size_t i, matches;
	int ok = 1;

	if (n->boolean >= 0) {
		if (n->boolean == 0)
			fail(x, n, NULL, "no value is allowed here (schema false)");
		return n->boolean;
	}
	if (n->ref != NULL)
		return validate(x, n->ref, inst);
	t = type_bit(inst);
	if ((n->has & SL__K_TYPE) && !(n->types & t)) {
		fmt_types(n->types, buf, sizeof(buf));
		FAIL("type", "must be of type %s", buf);
	}
	if (n->has & SL__K_CONST && !sl__schema_json_equal(inst, n->const_value))
		FAIL("const", "must be equal to the constant");
	if (n->enum_values != NULL) {
		for (i = 0; i < json_array_size(n->enum_values); i++)
			if (sl__schema_json_equal(inst, json_array_get(n->enum_values, i)))
				break;
		if (i == json_array_size(n->enum_values))
			FAIL("enum", "must be one of the allowed values");
	}
	if (t & SL__T_NUMBER)
		SUB(validate_number(x, n, inst));
	else if (t & SL__T_STRING)
		SUB(validate_string(x, n, inst));
	else if (t & SL__T_ARRAY)
		SUB(validate_array(x, n, inst));
	else if (t & SL__T_OBJECT)
		SUB(validate_object(x, n, inst));
	for (i = 0; i < n->n_all_of; i++)
		SUB(validate(x, n->all_of[i], inst));
	if (n->n_any_of > 0) {
		for (i = 0; i < n->n_any_of && !x->internal; i++)
			if (quiet(x, n->any_of[i], inst))
				break;
		if (i == n->n_any_of)
			FAIL("anyOf", "must match at least one schema in anyOf");
	}
	if (n->n_one_of > 0) {
		for (i = 0, matches = 0; i < n->n_one_of && matches < 2 && !x->internal; i++)
			matches += (size_t)quiet(x, n->one_of[i], inst);
		if (matches != 1)
			FAIL("oneOf", "must match exactly one schema in oneOf (matches %s)", matches ? "more" : "none");
	}
	if (n->not_ != NULL && quiet(x, n->not_, inst))
		FAIL("not", "must not match the schema in not");
	if (n->if_ != NULL) {
		if (quiet(x, n->if_, inst)) {
			if (n->then_ != NULL)
				SUB(validate(x, n->then_, inst));
		} else if (n->else_ != NULL) {
			SUB(validate(x, n->else_, inst));
		}
	}
	return ok && !x->internal;
}

static int
validate(struct vctx *x, const struct sl__schema_node *n, const json_t *inst)
{
	int ok;

	if (x->internal)
		return 0;
	/* Depth alone does not bound the work: 40 nested anyOf (or allOf) of
	 * two $refs each is 2^40 evaluations of one instance. */
	if (++x->steps > SL_SCHEMA_MAX_STEPS) {
		char msg[128];

		snprintf(msg, sizeof(msg), "schema too complex to evaluate (more than %d steps)", SL_SCHEMA_MAX_STEPS);
		internal_error(x, msg);
		return 0;
	}
	if (++x->depth > SL_SCHEMA_MAX_DEPTH) {
		char msg[128];

		snprintf(msg, sizeof(msg), "schema evaluation exceeds depth %d at %s (a $ref loop?)", SL_SCHEMA_MAX_DEPTH,
		         n->loc);
		internal_error(x, msg);
		x->depth--;
		return 0;
	}
	ok = validate_body(x, n, inst);
	x->depth--;
	return ok;
}

int
sl_schema_validate(const sl_schema_t *s, const json_t *instance, struct sl_schema_error *errs, size_t max_errs,
                   size_t *n_errs)
{
	struct vctx *x;
	int ok, rc;

	if (n_errs != NULL)
		*n_errs = 0;
	/* The context holds a 1 KiB path: keep it off small thread stacks. */
	if ((x = calloc(1, sizeof(*x))) == NULL) {
		if (errs != NULL && max_errs > 0) {
			memset(&errs[0], 0, sizeof(errs[0]));
			snprintf(errs[0].message, sizeof(errs[0].message), "out of memory");
			if (n_errs != NULL)
				*n_errs = 1;
		}
		return -1;
	}
	x->errs = max_errs > 0 ? errs : NULL;
	x->max_errs = max_errs;
	ok = s != NULL && instance != NULL ? validate(x, s->root, instance) : 0;
	if (s == NULL || instance == NULL)
		internal_error(x, "no schema or no instance");
	if (x->internal) {
		rc = -1;
		if (x->errs != NULL) {
			memset(&errs[0], 0, sizeof(errs[0]));
			snprintf(errs[0].message, sizeof(errs[0].message), "%s", x->internal_msg);
			x->n_errs = 1;
		}
	} else {
		rc = ok ? 0 : 1;
	}
	if (n_errs != NULL)
		*n_errs = rc == 0 ? 0 : x->n_errs;
	pcre2_match_data_free(x->md);
	free(x);
	return rc;
}
