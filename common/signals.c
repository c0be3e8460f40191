/* signals.c -- what the worker does on a signal: count it.
 *
 * SIGTERM and SIGINT ask for a stop (a second one for a stop without
 * waiting), SIGHUP for a reload; the consumer loop acts on the counts.
 * SIGPIPE is ignored: a peer that hangs up is an error return, not a
 * death. The handlers only count (async-signal-safe).
 */
#include "signals.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t stop_signals;
static volatile sig_atomic_t reload_signals;

/* SIGTERM, SIGINT. */
static void
on_stop_signal(int sig)
{
	(void)sig;
	stop_signals++;
}

/* SIGHUP. */
static void
on_hup(int sig)
{
	(void)sig;
	reload_signals++;
}

void
sl_signals_install(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_stop_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_hup;
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
}

int
sl_signals_stop(void)
{
	return (int)stop_signals;
}

int
sl_signals_take_reload(void)
{
	int n = (int)reload_signals;

	if (n)
		reload_signals = 0;
	return n;
}
