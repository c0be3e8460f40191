/* schema_ref.c -- $id and $ref: URI resolution, the resource registry, and
 * loading of remote documents through the caller's ref map.
 *
 * Every document a schema uses is scanned once for $id: each identified
 * subschema and plain-name anchor becomes a resource, found by absolute URI.
 * A $ref is resolved against the base URI in effect (RFC 3986 section 5),
 * its document found among the resources or loaded (the built-in draft-07
 * meta-schema, or a file through struct sl_schema_ref), and its fragment
 * followed as a JSON Pointer or looked up as an anchor. Nothing here fetches
 * from the network. Runs only during compilation, on one thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema_int.h"

struct uri {
	const char *scheme, *auth, *path, *query, *frag;
	size_t scheme_len, auth_len, path_len, query_len, frag_len;
	int has_scheme, has_auth, has_query, has_frag;
};

static int
is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static void
uri_parse(const char *u, struct uri *o)
{
	const char *p = u, *q;

	memset(o, 0, sizeof(*o));
	if (is_alpha(*p)) {
		for (q = p; is_alpha(*q) || (*q >= '0' && *q <= '9') || *q == '+' || *q == '-' || *q == '.'; q++)
			;
		if (*q == ':') {
			o->has_scheme = 1;
			o->scheme = p;
			o->scheme_len = (size_t)(q - p);
			p = q + 1;
		}
	}
	if (p[0] == '/' && p[1] == '/') {
		o->has_auth = 1;
		o->auth = p + 2;
		o->auth_len = strcspn(o->auth, "/?#");
		p = o->auth + o->auth_len;
	}
	o->path = p;
	o->path_len = strcspn(p, "?#");
	p += o->path_len;
	if (*p == '?') {
		o->has_query = 1;
		o->query = p + 1;
		o->query_len = strcspn(o->query, "#");
		p = o->query + o->query_len;
	}
	if (*p == '#') {
		o->has_frag = 1;
		o->frag = p + 1;
		o->frag_len = strlen(o->frag);
	}
}

/* RFC 3986 5.2.4, on in[0..len) (modified), appending to out at *olen. */
static void
remove_dots(char *in, size_t len, char *out, size_t *olen)
{
	size_t i = 0;
	char *slash;

	in[len] = '\0';
	while (i < len) {
		char *p = in + i;

		if (strncmp(p, "../", 3) == 0) {
			i += 3;
		} else if (strncmp(p, "./", 2) == 0 || strncmp(p, "/./", 3) == 0) {
			i += 2;
		} else if (strcmp(p, "/.") == 0) {
			p[1] = '/';
			i += 1;
		} else if (strncmp(p, "/../", 4) == 0 || strcmp(p, "/..") == 0) {
			/* Replace the prefix by "/" and drop the last output segment. */
			if (p[3] == '\0') {
				p[2] = '/';
				i += 2;
			} else {
				i += 3;
			}
			out[*olen] = '\0';
			slash = strrchr(out, '/');
			*olen = slash ? (size_t)(slash - out) : 0;
		} else if (strcmp(p, ".") == 0 || strcmp(p, "..") == 0) {
			i = len;
		} else {
			size_t n = 1 + strcspn(p + 1, "/");

			if (*p != '/')
				n = strcspn(p, "/");
			memcpy(out + *olen, p, n);
			*olen += n;
			i += n;
		}
	}
	out[*olen] = '\0';
}

static void
append(char *out, size_t *olen, const char *s, size_t n)
{
	memcpy(out + *olen, s, n);
	*olen += n;
	out[*olen] = '\0';
}

/* Resolves ref against base (RFC 3986 5.2.2; a base without a scheme is
 * treated the same way, as a path). Returns the result in s's arena, or NULL
 * when out of memory. */
char *
sl__schema_uri_resolve(struct sl_schema *s, const char *base, const char *ref)
{
	struct uri b, r;
	size_t cap = strlen(base) + strlen(ref) + 8, olen = 0, plen;
	char *out, *path = NULL, *res = NULL;

	uri_parse(base, &b);
	uri_parse(ref, &r);
	if ((out = malloc(cap)) == NULL || (path = malloc(cap)) == NULL)
		goto out;
	out[0] = '\0';
	plen = 0;
	if (r.has_scheme) {
		b = r;
	} else if (r.has_auth) {
		r.scheme = b.scheme, r.scheme_len = b.scheme_len, r.has_scheme = b.has_scheme;
		b = r;
	} else if (r.path_len == 0) {
		if (r.has_query)
			b.query = r.query, b.query_len = r.query_len, b.has_query = 1;
		b.frag = r.frag, b.frag_len = r.frag_len, b.has_frag = r.has_frag;
	} else {
		if (r.path[0] == '/') {
			append(path, &plen, r.path, r.path_len);
		} else {
			/* Merge: the base path up to its last '/', then ref's path. */
			const char *last = NULL, *q;

			for (q = b.path; q < b.path + b.path_len; q++)
				if (*q == '/')
					last = q;
			if (b.has_auth && b.path_len == 0)
				append(path, &plen, "/", 1);
			else if (last != NULL)
				append(path, &plen, b.path, (size_t)(last - b.path) + 1);
			append(path, &plen, r.path, r.path_len);
		}
		b.path = path, b.path_len = plen;
		b.query = r.query, b.query_len = r.query_len, b.has_query = r.has_query;
		b.frag = r.frag, b.frag_len = r.frag_len, b.has_frag = r.has_frag;
	}
	if (b.has_scheme) {
		append(out, &olen, b.scheme, b.scheme_len);
		append(out, &olen, ":", 1);
	}
	if (b.has_auth) {
		append(out, &olen, "//", 2);
		append(out, &olen, b.auth, b.auth_len);
	}
	{
		char *tmp = malloc(b.path_len + 1);

		if (tmp == NULL)
			goto out;
		memcpy(tmp, b.path, b.path_len);
		/* A relative path keeps its leading "../": there is nothing to
		 * climb out of, and dropping it would change the reference. */
		if (b.has_scheme || b.has_auth || (b.path_len > 0 && b.path[0] == '/'))
			remove_dots(tmp, b.path_len, out, &olen);
		else
			append(out, &olen, tmp, b.path_len);
		free(tmp);
	}
	if (b.has_query) {
		append(out, &olen, "?", 1);
		append(out, &olen, b.query, b.query_len);
	}
	if (b.has_frag) {
		append(out, &olen, "#", 1);
		append(out, &olen, b.frag, b.frag_len);
	}
	res = sl__schema_strdup(s, out);
out:
	free(out);
	free(path);
	return res;
}

/* Copies u without its fragment into s's arena. */
static char *
strip_fragment(struct sl_schema *s, const char *u)
{
	char *r = sl__schema_strdup(s, u), *h;

	if (r != NULL && (h = strchr(r, '#')) != NULL)
		*h = '\0';
	return r;
}

static struct sl__schema_resource *
find_resource(struct sl__schema_compiler *c, const char *uri)
{
	struct sl__schema_resource *r;

	for (r = c->resources; r != NULL; r = r->next)
		if (strcmp(r->uri, uri) == 0)
			return r;
	return NULL;
}

/* Registers a resource unless its URI is taken (the first one wins). */
static int
add_resource(struct sl__schema_compiler *c, const char *uri, json_t *json, const char *base, const char *loc)
{
	struct sl__schema_resource *r;

	if (find_resource(c, uri) != NULL)
		return 0;
	if ((r = sl__schema_alloc(c->s, sizeof(*r))) == NULL || (r->loc = sl__schema_strdup(c->s, loc)) == NULL)
		return -1;
	r->uri = uri;
	r->json = json;
	r->base = base;
	r->next = c->resources;
	c->resources = r;
	return 0;
}

/* The base URI inside schema v whose enclosing base is base: v's $id applies
 * unless v is a $ref (draft-07 ignores a $ref's siblings). Arena string or
 * base itself; NULL when out of memory. */
static const char *
inner_base(struct sl__schema_compiler *c, const json_t *v, const char *base)
{
	const json_t *id = json_object_get(v, "$id");

	if (!json_is_object(v) || !json_is_string(id) || json_object_get(v, "$ref") != NULL)
		return base;
	return strip_fragment(c->s, sl__schema_uri_resolve(c->s, base, json_string_value(id)));
}

static const char *const single_kw[] = {
	"additionalItems", "additionalProperties", "contains", "propertyNames", "if", "then", "else", "not", "items",
};
static const char *const array_kw[] = { "items", "allOf", "anyOf", "oneOf" };
static const char *const map_kw[] = { "properties", "patternProperties", "definitions", "dependencies" };

/* Appends "/" + escaped token to the pointer in buf (truncating: it is only
 * used in messages). */
static void
ptr_push(char *buf, size_t size, const char *tok)
{
	size_t n = strlen(buf);

	if (n + 1 < size)
		buf[n++] = '/';
	for (; *tok != '\0' && n + 2 < size; tok++) {
		if (*tok == '~' || *tok == '/') {
			buf[n++] = '~';
			buf[n++] = *tok == '~' ? '0' : '1';
		} else {
			buf[n++] = *tok;
		}
	}
	buf[n] = '\0';
}

/* Registers the $id resources in schema v (at pointer ptr of the document
 * whose location prefix is prefix), recursing through the keywords that hold
 * subschemas. */
static int
scan(struct sl__schema_compiler *c, json_t *v, const char *base, const char *prefix, const char *ptr)
{
	const json_t *id = json_object_get(v, "$id");
	const char *inner, *key;
	char loc[1024], sub[1024];
	json_t *child, *m;
	size_t i, k;

	if (!json_is_object(v))
		return 0;
	if (++c->depth > SL_SCHEMA_MAX_DEPTH) {
		snprintf(c->errbuf, c->errbuf_size, "%s#%s: schema nesting exceeds depth %d", prefix, ptr,
		         SL_SCHEMA_MAX_DEPTH);
		return -1;
	}
	snprintf(loc, sizeof(loc), "%s#%s", prefix, ptr);
	if ((inner = inner_base(c, v, base)) == NULL)
		goto oom;
	if (json_is_string(id) && json_object_get(v, "$ref") == NULL) {
		const char *abs = sl__schema_uri_resolve(c->s, base, json_string_value(id));
		const char *hash = abs ? strchr(abs, '#') : NULL;

		if (abs == NULL)
			goto oom;
		/* "#foo" or "x#foo" names an anchor; "x" or "x#" a resource. */
		if (add_resource(c, hash && hash[1] != '\0' ? abs : inner, v, base, loc) < 0)
			goto oom;
	}
	for (i = 0; i < sizeof(single_kw) / sizeof(single_kw[0]); i++) {
		snprintf(sub, sizeof(sub), "%s", ptr);
		ptr_push(sub, sizeof(sub), single_kw[i]);
		if ((child = json_object_get(v, single_kw[i])) != NULL && scan(c, child, inner, prefix, sub) < 0)
			return -1;
	}
	for (i = 0; i < sizeof(array_kw) / sizeof(array_kw[0]); i++) {
		if (!json_is_array(m = json_object_get(v, array_kw[i])))
			continue;
		json_array_foreach(m, k, child) {
			char idx[24];

			snprintf(sub, sizeof(sub), "%s", ptr);
			ptr_push(sub, sizeof(sub), array_kw[i]);
			snprintf(idx, sizeof(idx), "%zu", k);
			ptr_push(sub, sizeof(sub), idx);
			if (scan(c, child, inner, prefix, sub) < 0)
				return -1;
		}
	}
	for (i = 0; i < sizeof(map_kw) / sizeof(map_kw[0]); i++) {
		if (!json_is_object(m = json_object_get(v, map_kw[i])))
			continue;
		json_object_foreach(m, key, child) {
			snprintf(sub, sizeof(sub), "%s", ptr);
			ptr_push(sub, sizeof(sub), map_kw[i]);
			ptr_push(sub, sizeof(sub), key);
			if (scan(c, child, inner, prefix, sub) < 0)
				return -1;
		}
	}
	c->depth--;
	return 0;
oom:
	snprintf(c->errbuf, c->errbuf_size, "out of memory");
	return -1;
}

/* Adds document doc (stolen, even on error) fetched from uri: the schema
 * keeps it for its lifetime, and its resources are registered. */
int
sl__schema_add_document(struct sl__schema_compiler *c, json_t *doc, const char *uri)
{
	struct sl_schema *s = c->s;
	const char *prefix = strcmp(uri, c->root_uri) == 0 ? "" : uri;
	char loc[1024];
	json_t **docs;

	docs = realloc(s->docs, (s->n_docs + 1) * sizeof(*docs));
	if (docs == NULL) {
		json_decref(doc);
		snprintf(c->errbuf, c->errbuf_size, "out of memory");
		return -1;
	}
	s->docs = docs;
	s->docs[s->n_docs++] = doc; /* now owned by s */
	snprintf(loc, sizeof(loc), "%s#", prefix);
	if ((uri = sl__schema_strdup(s, uri)) == NULL || add_resource(c, uri, doc, uri, loc) < 0) {
		snprintf(c->errbuf, c->errbuf_size, "out of memory");
		return -1;
	}
	return scan(c, doc, uri, prefix, "");
}

/* Loads the document at uri (no fragment) from the built-in meta-schema or
 * through the ref map. Returns 0, or -1 with errbuf set. */
static int
load_remote(struct sl__schema_compiler *c, const char *uri, const char *ref, const char *at)
{
	char path[4096];
	json_error_t jerr;
	json_t *doc = NULL;
	size_t i, n;

	if (strcmp(uri, sl__schema_draft07_uri) == 0) {
		if ((doc = json_loads(sl__schema_draft07_text, 0, &jerr)) == NULL) {
			snprintf(c->errbuf, c->errbuf_size, "could not parse the built-in meta-schema: %s", jerr.text);
			return -1;
		}
		return sl__schema_add_document(c, doc, uri);
	}
	for (i = 0; i < c->n_refs; i++) {
		n = strlen(c->refs[i].prefix);
		if (n == 0 || strncmp(uri, c->refs[i].prefix, n) != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", c->refs[i].dir, uri + n + (uri[n] == '/'));
		doc = json_load_file(path, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
		if (doc == NULL) {
			snprintf(c->errbuf, c->errbuf_size, "%s: could not load $ref \"%s\" from \"%s\": %s", at, ref,
			         path, jerr.text);
			return -1;
		}
		return sl__schema_add_document(c, doc, uri);
	}
	snprintf(c->errbuf, c->errbuf_size, "%s: could not resolve $ref \"%s\": no document \"%s\" (no --ref/ref map entry for it)",
	         at, ref, uri);
	return -1;
}

/* Decodes %XX escapes of s into a new malloc'd string; NULL on a bad escape
 * or out of memory. */
static char *
percent_decode(const char *s)
{
	char *out = malloc(strlen(s) + 1), *o = out;
	unsigned x;

	if (out == NULL)
		return NULL;
	for (; *s != '\0'; s++) {
		if (*s == '%') {
			if (sscanf(s + 1, "%2x", &x) != 1 || strlen(s) < 3 || x == 0) {
				free(out);
				return NULL;
			}
			*o++ = (char)x;
			s += 2;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
	return out;
}

/* Resolves ref (the value of a $ref at schema location at, where base is in
 * effect) to its target: *out_json (borrowed from a document the schema
 * owns), *out_base (the base URI enclosing the target, to compile it with)
 * and *out_loc (its location, for messages). Returns 0, or -1 with errbuf
 * set; the out-parameters are NULL on failure. */
int
sl__schema_ref_resolve(struct sl__schema_compiler *c, const char *base, const char *ref, const char *at,
                       json_t **out_json, const char **out_base, const char **out_loc)
{
	struct sl__schema_resource *r;
	char *abs, *doc, *frag, *ptr = NULL, *tok, *next, *loc, *p, save;
	json_t *cur;
	const char *cbase;
	int rc = -1;

	*out_json = NULL;
	*out_base = NULL;
	*out_loc = NULL;
	if ((abs = sl__schema_uri_resolve(c->s, base, ref)) == NULL || (doc = strip_fragment(c->s, abs)) == NULL)
		goto oom;
	frag = strchr(abs, '#');
	frag = frag ? frag + 1 : abs + strlen(abs);
	if (find_resource(c, doc) == NULL && load_remote(c, doc, ref, at) < 0)
		goto out;
	if (*frag != '\0' && *frag != '/') {
		if ((r = find_resource(c, abs)) == NULL) {
			snprintf(c->errbuf, c->errbuf_size, "%s: could not resolve $ref \"%s\": no anchor \"%s\"", at, ref, abs);
			goto out;
		}
		*out_json = r->json;
		*out_base = r->base;
		*out_loc = r->loc;
		rc = 0;
		goto out;
	}
	r = find_resource(c, doc);
	if ((ptr = percent_decode(frag)) == NULL) {
		snprintf(c->errbuf, c->errbuf_size, "%s: could not resolve $ref \"%s\": bad percent-encoding", at, ref);
		goto out;
	}
	if ((loc = sl__schema_alloc(c->s, strlen(r->loc) + strlen(ptr) + 1)) == NULL)
		goto oom;
	strcat(strcpy(loc, r->loc), ptr);
	cur = r->json;
	cbase = r->base;
	/* ptr is "" or "/tok/tok...": each '/' starts a token, "" included. */
	for (tok = ptr; *tok == '/'; tok = next) {
		tok++;
		next = tok + strcspn(tok, "/");
		save = *next;
		*next = '\0';
		/* Unescape ~1 then ~0 in place, as RFC 6901 orders it. */
		for (p = tok; *p != '\0'; p++) {
			if (*p != '~')
				continue;
			if (p[1] != '0' && p[1] != '1') {
				snprintf(c->errbuf, c->errbuf_size, "%s: could not resolve $ref \"%s\": bad escape in JSON Pointer",
				         at, ref);
				goto out;
			}
			*p = p[1] == '1' ? '/' : '~';
			memmove(p + 1, p + 2, strlen(p + 2) + 1);
		}
		if ((cbase = inner_base(c, cur, cbase)) == NULL)
			goto oom;
		if (json_is_object(cur)) {
			cur = json_object_get(cur, tok);
		} else if (json_is_array(cur)) {
			char *end;
			unsigned long idx = strtoul(tok, &end, 10);

			cur = (*end != '\0' || (tok[0] == '0' && tok[1] != '\0') || tok[0] < '0' || tok[0] > '9')
			              ? NULL
			              : json_array_get(cur, idx);
		} else {
			cur = NULL;
		}
		if (cur == NULL) {
			snprintf(c->errbuf, c->errbuf_size, "%s: could not resolve $ref \"%s\": \"%s\" does not exist", at, ref,
			         loc);
			goto out;
		}
		*next = save;
	}
	*out_json = cur;
	*out_base = cbase;
	*out_loc = loc;
	rc = 0;
	goto out;
oom:
	snprintf(c->errbuf, c->errbuf_size, "out of memory");
out:
	free(ptr);
	return rc;
}
