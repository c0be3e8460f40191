/* plugin.c -- job handlers loaded from shared objects ("plugin:PATH.so:NAME").
 *
 * Loads each .so once, checks that it was built for this worker's handler
 * ABI before calling anything in it (as PostgreSQL's PG_MODULE_MAGIC), runs
 * its sluice_plugin_init(), and turns NAME and NAME_plan into a struct
 * sl_handler that runs them through handler_api.c's adapter. Loaded objects
 * and handlers are never freed: jobs hold them until the process ends, and
 * code cannot be unloaded while a thread might still be in it. The API a
 * plugin calls is the worker executable's own (exported with a dynamic list,
 * see the Makefile). Not for: the built-in handlers or running jobs.
 */
#include "plugin.h"

#include <ctype.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One loaded .so. */
struct so {
	struct so *next;
	char *path;                /* as resolved from the configuration */
	void *handle;
};

/* One handler made from a .so. */
struct entry {
	struct entry *next;
	const struct so *so;
	char *name;                /* NAME */
	struct sl_api_handler api;
	struct sl_handler handler; /* name is the whole spec; data is &api */
};

/* Both lists grow under mu and never shrink; what they hold never moves. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct so *sos;
static struct entry *entries;

static char *
xstrdup(const char *s)
{
	char *d = strdup(s);

	if (d == NULL)
		abort();
	return d;
}

int
sl_plugin_is_spec(const char *handler)
{
	return handler != NULL && strncmp(handler, SL_PLUGIN_PREFIX, strlen(SL_PLUGIN_PREFIX)) == 0;
}

/* Returns 1 when s is a C identifier, which a symbol name must be. */
static int
is_identifier(const char *s)
{
	if (!isalpha((unsigned char)*s) && *s != '_')
		return 0;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && *s != '_')
			return 0;
	return 1;
}

/* Returns dlerror()'s text, or `fallback` when it has none. */
static const char *
dl_error(const char *fallback)
{
	const char *e = dlerror();

	return e != NULL ? e : fallback;
}

/* Checks a freshly opened .so's declaration. Returns 0, or -1 with the
 * reason in errbuf. */
static int
check_magic(void *handle, const char *path, char *errbuf, size_t errbuf_size)
{
	const struct sluice_plugin_magic *m;

	dlerror();
	m = dlsym(handle, "sluice_plugin_magic");
	if (m == NULL) {
		snprintf(errbuf, errbuf_size,
		         "\"%s\" is not a sluice plugin: it has no sluice_plugin_magic (write SLUICE_PLUGIN; in one "
		         "of its files, from <sluice/handler.h>)", path);
		return -1;
	}
	if (m->magic != SLUICE_PLUGIN_MAGIC) {
		snprintf(errbuf, errbuf_size, "\"%s\" is not a sluice plugin: its sluice_plugin_magic is not sluice's",
		         path);
		return -1;
	}
	if (m->abi_version != SLUICE_ABI_VERSION) {
		snprintf(errbuf, errbuf_size,
		         "plugin \"%s\" was built for sluice handler ABI version %u, but this sluice-worker has ABI "
		         "version %u: rebuild it against this version's <sluice/handler.h>",
		         path, m->abi_version, SLUICE_ABI_VERSION);
		return -1;
	}
	if (m->size != sizeof(*m)) {
		snprintf(errbuf, errbuf_size, "plugin \"%s\" has a sluice_plugin_magic of %u bytes, expected %zu",
		         path, m->size, sizeof(*m));
		return -1;
	}
	if (m->jansson_major != JANSSON_MAJOR_VERSION) {
		snprintf(errbuf, errbuf_size,
		         "plugin \"%s\" was built with jansson %u, but this sluice-worker uses jansson %d: rebuild it",
		         path, m->jansson_major, JANSSON_MAJOR_VERSION);
		return -1;
	}
	return 0;
}

/* Returns the .so at path, loading, checking and starting it the first time.
 * Returns NULL with the reason in errbuf. Under mu. */
static const struct so *
load(const char *path, char *errbuf, size_t errbuf_size)
{
	struct so *so;
	void *handle;
	int (*init)(char *, size_t);
	char why[512];

	for (so = sos; so != NULL; so = so->next)
		if (strcmp(so->path, path) == 0)
			return so;

	dlerror();
	handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (handle == NULL) {
		snprintf(errbuf, errbuf_size, "could not load plugin \"%s\": %s", path, dl_error("unknown error"));
		return NULL;
	}
	if (check_magic(handle, path, errbuf, errbuf_size) < 0)
		goto err;
	dlerror();
	*(void **)&init = dlsym(handle, "sluice_plugin_init");
	if (init != NULL) {
		why[0] = '\0';
		if (init(why, sizeof(why)) != 0) {
			why[sizeof(why) - 1] = '\0';
			why[strcspn(why, "\n")] = '\0';
			snprintf(errbuf, errbuf_size, "could not start plugin \"%s\": sluice_plugin_init failed: %s", path,
			         *why ? why : "no reason given");
			goto err;
		}
	}
	if ((so = calloc(1, sizeof(*so))) == NULL)
		abort();
	so->path = xstrdup(path);
	so->handle = handle; /* now owned by the list, for the process's life */
	so->next = sos;
	sos = so;
	return so;
err:
	dlclose(handle);
	return NULL;
}

const struct sl_handler *
sl_plugin_find(const struct sl_config *cfg, const char *spec, char *errbuf, size_t errbuf_size)
{
	const char *body = spec + strlen(SL_PLUGIN_PREFIX), *colon = strrchr(body, ':');
	char rel[4096], path[4096 + 2], plan_name[300];
	const char *name;
	const struct so *so;
	struct entry *e = NULL;
	sluice_handler_fn *run;
	sluice_plan_fn *plan;

	if (!sl_plugin_is_spec(spec) || colon == NULL || colon == body || !is_identifier(colon + 1) ||
	    (size_t)(colon - body) >= sizeof(rel) || strlen(colon + 1) > 200) {
		snprintf(errbuf, errbuf_size, "\"%s\" is not \"plugin:PATH.so:NAME\" with NAME a C identifier", spec);
		return NULL;
	}
	memcpy(rel, body, (size_t)(colon - body));
	rel[colon - body] = '\0';
	name = colon + 1;
	sl_config_path(cfg, rel, path, sizeof(path));
	if (strchr(path, '/') == NULL) {
		/* dlopen() would search the library path for a bare name. */
		memmove(path + 2, path, strlen(path) + 1);
		memcpy(path, "./", 2);
	}

	pthread_mutex_lock(&mu);
	if ((so = load(path, errbuf, errbuf_size)) == NULL)
		goto out;
	for (e = entries; e != NULL; e = e->next)
		if (e->so == so && strcmp(e->name, name) == 0)
			goto out;

	dlerror();
	*(void **)&run = dlsym(so->handle, name);
	if (run == NULL) {
		snprintf(errbuf, errbuf_size, "plugin \"%s\" has no handler \"%s\": %s", path, name,
		         dl_error("the symbol is NULL"));
		goto out;
	}
	snprintf(plan_name, sizeof(plan_name), "%s_plan", name);
	*(void **)&plan = dlsym(so->handle, plan_name); /* optional */
	dlerror();

	if ((e = calloc(1, sizeof(*e))) == NULL)
		abort();
	e->so = so;
	e->name = xstrdup(name);
	e->api.run = run;
	e->api.plan = plan;
	e->handler.name = xstrdup(spec);
	e->handler.run = sl_api_run;
	e->handler.plan = plan != NULL ? sl_api_plan : NULL;
	e->handler.data = &e->api;
	e->next = entries;
	entries = e;
out:
	pthread_mutex_unlock(&mu);
	return e != NULL ? &e->handler : NULL;
}
