/* notify.c -- the sd_notify datagram protocol behind notify.h.
 *
 * One SOCK_DGRAM socket, unconnected, and sendto() per message, so that a
 * restarted systemd (which re-creates the socket at the same address) is
 * reached without reopening anything. systemd identifies the sender from the
 * kernel's SCM_CREDENTIALS, which carry the process id, so any thread may
 * send for the main process. Not a client of the rest of libsystemd.
 */
#include "notify.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static pthread_mutex_t notify_lock = PTHREAD_MUTEX_INITIALIZER;

/* Guarded by notify_lock. */
static int notify_fd = -1;
static struct sockaddr_un notify_addr;
static socklen_t notify_addr_len;
static uint64_t notify_watchdog_usec;

/* Parses a positive decimal number that fills all of s into *out (OUT, 0 on
 * failure). Returns 0 or -1. */
static int
parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	const char *p;

	*out = 0;
	if (s == NULL || *s == '\0')
		return -1;
	for (p = s; *p; p++) {
		if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (v == 0)
		return -1;
	*out = v;
	return 0;
}

/* Closes the socket; called with notify_lock held. */
static void
close_locked(void)
{
	if (notify_fd >= 0)
		close(notify_fd);
	notify_fd = -1;
	notify_addr_len = 0;
	notify_watchdog_usec = 0;
}

int
sl_notify_init(char *errbuf, size_t errbuf_size)
{
	const char *path = getenv("NOTIFY_SOCKET");
	const char *usec = getenv("WATCHDOG_USEC");
	const char *pid = getenv("WATCHDOG_PID");
	struct sockaddr_un addr;
	socklen_t addr_len;
	uint64_t watchdog = 0, watchdog_pid;
	size_t n;
	int fd = -1, ret = -1;

	pthread_mutex_lock(&notify_lock);
	close_locked();
	if (path == NULL || *path == '\0') {
		ret = 0;
		goto out;
	}
	n = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || n >= sizeof(addr.sun_path)) {
		snprintf(errbuf, errbuf_size,
		         "invalid NOTIFY_SOCKET \"%s\": expected an absolute path or @abstract name "
		         "shorter than %zu bytes",
		         path, sizeof(addr.sun_path));
		goto out;
	}
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	memcpy(addr.sun_path, path, n);
	if (path[0] == '@') {
		/* Abstract namespace: a leading NUL and no terminating one. */
		addr.sun_path[0] = '\0';
		addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	} else {
		addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	}
	if (usec != NULL && *usec != '\0') {
		if (parse_u64(usec, &watchdog) != 0) {
			snprintf(errbuf, errbuf_size,
			         "invalid WATCHDOG_USEC \"%s\": expected a positive number of microseconds",
			         usec);
			goto out;
		}
		/* systemd sets WATCHDOG_PID to the main process; a child that
		 * inherited the environment must not ping on its behalf. */
		if (pid != NULL && *pid != '\0') {
			if (parse_u64(pid, &watchdog_pid) != 0) {
				snprintf(errbuf, errbuf_size,
				         "invalid WATCHDOG_PID \"%s\": expected a process id", pid);
				goto out;
			}
			if (watchdog_pid != (uint64_t)getpid())
				watchdog = 0;
		}
	}
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0) {
		snprintf(errbuf, errbuf_size, "could not create a socket for NOTIFY_SOCKET \"%s\": %m",
		         path);
		goto out;
	}
	notify_fd = fd;
	notify_addr = addr;
	notify_addr_len = addr_len;
	notify_watchdog_usec = watchdog;
	ret = 0;
out:
	pthread_mutex_unlock(&notify_lock);
	return ret;
}

int
sl_notify(const char *fmt, ...)
{
	char *msg = NULL;
	va_list ap;
	ssize_t sent;
	int len, ret = -1, saved_errno;

	pthread_mutex_lock(&notify_lock);
	if (notify_fd < 0) {
		ret = 0;
		goto out;
	}
	va_start(ap, fmt);
	len = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (len < 0) {
		msg = NULL;
		errno = ENOMEM;
		goto out;
	}
	sent = sendto(notify_fd, msg, (size_t)len, MSG_NOSIGNAL, (struct sockaddr *)&notify_addr,
	              notify_addr_len);
	if (sent < 0)
		goto out;
	if (sent != len) {
		errno = EMSGSIZE;
		goto out;
	}
	ret = 1;
out:
	saved_errno = errno;
	pthread_mutex_unlock(&notify_lock);
	free(msg);
	errno = saved_errno;
	return ret;
}

int
sl_notify_enabled(void)
{
	int on;

	pthread_mutex_lock(&notify_lock);
	on = notify_fd >= 0;
	pthread_mutex_unlock(&notify_lock);
	return on;
}

uint64_t
sl_notify_watchdog_usec(void)
{
	uint64_t usec;

	pthread_mutex_lock(&notify_lock);
	usec = notify_watchdog_usec;
	pthread_mutex_unlock(&notify_lock);
	return usec;
}

void
sl_notify_close(void)
{
	pthread_mutex_lock(&notify_lock);
	close_locked();
	pthread_mutex_unlock(&notify_lock);
}
