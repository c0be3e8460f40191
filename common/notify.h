/* notify.h -- tell systemd how the worker is doing, without libsystemd.
 *
 * For: the sd_notify(3) datagram protocol: a newline-separated list of
 * VARIABLE=value assignments ("READY=1\nSTATUS=3 partitions, 120 jobs/s")
 * sent to the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or an abstract
 * name spelled with a leading '@'); and the watchdog interval from
 * $WATCHDOG_USEC, honoured only when $WATCHDOG_PID is unset or names this
 * process. Without $NOTIFY_SOCKET (not started by systemd with Type=notify)
 * every call is a cheap no-op.
 * Not for: deciding when to send what (the worker does: READY=1 once the
 * group is joined and PostgreSQL answers, WATCHDOG=1 only while it makes
 * progress), file descriptor passing, or socket activation.
 *
 * Threads: sl_notify_init() and sl_notify_close() belong to the main
 * thread, normally once at start and once at exit; sl_notify() and the
 * getters may be called from any thread at any time, even concurrently with
 * them (a mutex guards the state).
 */
#ifndef SL_NOTIFY_H
#define SL_NOTIFY_H

#include <stddef.h>
#include <stdint.h>

/* Reads $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID and opens the
 * socket that sl_notify() sends on, replacing any earlier state. The
 * environment is left as it is (unsetenv() is not safe once threads run).
 * Returns 0, also when $NOTIFY_SOCKET is unset (notifications off); or -1
 * with the reason in errbuf when a variable is malformed or the socket
 * cannot be created, and then notifications are off. Under systemd that
 * means READY=1 never arrives, so a caller should treat -1 as fatal. */
int sl_notify_init(char *errbuf, size_t errbuf_size);

/* Formats one message and sends it as one datagram. Returns 1 when it was
 * sent, 0 when notifications are off, -1 when it could not be sent (errno
 * says why; systemd may be gone, which is rarely worth more than a warning). */
int sl_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Returns 1 when notifications are on (sl_notify_init() found a socket). */
int sl_notify_enabled(void);

/* Returns the watchdog interval in microseconds, or 0 when systemd expects
 * no WATCHDOG=1 pings from this process. Ping at half the interval. */
uint64_t sl_notify_watchdog_usec(void);

/* Closes the socket and turns notifications off. Safe to call twice. */
void sl_notify_close(void);

#endif
