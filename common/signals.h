/* signals.h -- stop and reload requests (signals.c). */
#ifndef SL_SIGNALS_H
#define SL_SIGNALS_H

/* Installs the handlers for SIGTERM, SIGINT, SIGHUP, and ignores SIGPIPE. */
void sl_signals_install(void);

/* How many stop signals (SIGTERM, SIGINT) came: 0 none, 1 drain, 2 or more
 * stop now. Any thread. */
int sl_signals_stop(void);

/* Returns nonzero once per SIGHUP burst: a reload was asked for since the
 * last call. Consumer thread. */
int sl_signals_take_reload(void);

#endif
