/* plugin.h -- job handlers loaded from shared objects.
 *
 * worker.conf names one as handler = "plugin:PATH.so:NAME": NAME is a
 * sluice_handler_fn in the .so at PATH (relative to the configuration's
 * folder), NAME_plan its optional sluice_plan_fn (<sluice/handler.h>).
 * Each .so is loaded once per process and never unloaded; the handlers made
 * from it live as long. Not for: the built-in handlers (the program hands
 * them to the worker) or running jobs (txn.c).
 */
#ifndef SL_PLUGIN_H
#define SL_PLUGIN_H

#include <stddef.h>

#include "config.h"
#include "handler_int.h"

#define SL_PLUGIN_PREFIX "plugin:"

/* Returns 1 when a handler setting names a plugin (starts with "plugin:"). */
int sl_plugin_is_spec(const char *handler);

/* Returns the handler that `spec` ("plugin:PATH.so:NAME", PATH resolved
 * against cfg's folder) names, borrowed: it lives as long as the process.
 * The first time a .so is named it is loaded (dlopen, RTLD_NOW |
 * RTLD_LOCAL), its sluice_plugin_magic checked against this worker's ABI
 * before anything else, and its sluice_plugin_init() called if it has one.
 * Returns NULL with the reason in errbuf (the file's missing, not a plugin,
 * another ABI, its init failed, no NAME in it). Any thread; loading is
 * serialized, so a plugin's init runs once even if two threads ask. */
const struct sl_handler *sl_plugin_find(const struct sl_config *cfg, const char *spec, char *errbuf,
                                        size_t errbuf_size);

#endif
