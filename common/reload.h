/* reload.h -- SIGHUP (reload.c). */
#ifndef SL_RELOAD_H
#define SL_RELOAD_H

#include "worker_int.h"

/* Reads w's configuration file again and applies what can change without
 * a restart (log level and format, limits other than executors, batch and
 * message size, retry policies); logs what it could not apply, or why it
 * kept the running configuration. Consumer thread. */
void sl_reload(struct sl_worker *w);

#endif
