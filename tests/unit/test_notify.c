/* test_notify.c -- unit tests for notify.c: the sd_notify datagrams as systemd would receive them.
 *
 * Each test binds an AF_UNIX datagram socket (a path in a temporary folder,
 * or an abstract name), points NOTIFY_SOCKET at it and reads what arrives.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include "notify.h"

struct fixture {
	char dir[64];
	char path[128];
	int fd;
};

/* Binds a datagram socket at `name` ('@' for abstract); returns the fd. */
static int
bind_receiver(const char *name)
{
	struct sockaddr_un addr;
	struct timeval tv = { 2, 0 };
	socklen_t len;
	int fd;

	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", name);
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(name) + 1);
	if (name[0] == '@') {
		addr.sun_path[0] = '\0';
		len--;
	}
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	assert_int_equal(bind(fd, (struct sockaddr *)&addr, len), 0);
	return fd;
}

/* Receives one datagram into buf as a string; fails the test on timeout. */
static void
receive(int fd, char *buf, size_t size)
{
	ssize_t n = recv(fd, buf, size - 1, 0);

	assert_true(n >= 0);
	buf[n] = '\0';
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/sluice-notify-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/notify", f->dir);
	f->fd = -1;
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	sl_notify_close();
	if (f->fd >= 0)
		close(f->fd);
	unlink(f->path);
	rmdir(f->dir);
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	free(f);
	return 0;
}

static void
test_unset_is_noop(void **state)
{
	char err[256];

	(void)state;
	assert_int_equal(sl_notify_init(err, sizeof(err)), 0);
	assert_int_equal(sl_notify_enabled(), 0);
	assert_int_equal(sl_notify("READY=1"), 0);
	assert_int_equal(sl_notify_watchdog_usec(), 0);
	setenv("NOTIFY_SOCKET", "", 1);
	assert_int_equal(sl_notify_init(err, sizeof(err)), 0);
	assert_int_equal(sl_notify_enabled(), 0);
}

static void
test_path_socket(void **state)
{
	struct fixture *f = *state;
	char err[256], buf[1024];

	f->fd = bind_receiver(f->path);
	setenv("NOTIFY_SOCKET", f->path, 1);
	assert_int_equal(sl_notify_init(err, sizeof(err)), 0);
	assert_int_equal(sl_notify_enabled(), 1);
	assert_int_equal(sl_notify("READY=1\nSTATUS=%d partitions, %s", 3, "120 jobs/s"), 1);
	receive(f->fd, buf, sizeof(buf));
	assert_string_equal(buf, "READY=1\nSTATUS=3 partitions, 120 jobs/s");
	assert_int_equal(sl_notify("WATCHDOG=1"), 1);
	receive(f->fd, buf, sizeof(buf));
	assert_string_equal(buf, "WATCHDOG=1");
	assert_int_equal(sl_notify("STOPPING=1"), 1);
	receive(f->fd, buf, sizeof(buf));
	assert_string_equal(buf, "STOPPING=1");

	/* The receiver is gone (systemd stopped): an error, not a crash. */
	close(f->fd);
	f->fd = -1;
	unlink(f->path);
	errno = 0;
	assert_int_equal(sl_notify("WATCHDOG=1"), -1);
	assert_true(errno == ENOENT || errno == ECONNREFUSED);

	sl_notify_close();
	assert_int_equal(sl_notify_enabled(), 0);
	assert_int_equal(sl_notify("READY=1"), 0);
	sl_notify_close();
}

static void
test_abstract_socket(void **state)
{
	struct fixture *f = *state;
	char name[64], err[256], buf[256];

	snprintf(name, sizeof(name), "@sluice-test-notify-%ld", (long)getpid());
	f->fd = bind_receiver(name);
	setenv("NOTIFY_SOCKET", name, 1);
	assert_int_equal(sl_notify_init(err, sizeof(err)), 0);
	assert_int_equal(sl_notify("RELOADING=1"), 1);
	receive(f->fd, buf, sizeof(buf));
	assert_string_equal(buf, "RELOADING=1");
}

static void
test_watchdog(void **state)
{
	struct fixture *f = *state;
	char err[256], pid[32];

	f->fd = bind_receiver(f->path);
	setenv("NOTIFY_SOCKET", f->path, 1);
	setenv("WATCHDOG_USEC", "30000000", 1);
	assert_int_equal(sl_notify_init(err, sizeof(err)), 0);
	assert_int_equal(sl_notify_watchdog_usec(), 30000000);

	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	setenv("WATCHDOG_PID", pid, 1);
	assert_int_equal(sl_notify_init(err, sizeof(err)), 0);
	assert_int_equal(sl_notify_watchdog_usec(), 30000000);

	/* Meant for another process: no pings from this one. */
	snprintf(pid, sizeof(pid), "%ld", (long)getpid() + 1);
	setenv("WATCHDOG_PID", pid, 1);
	assert_int_equal(sl_notify_init(err, sizeof(err)), 0);
	assert_int_equal(sl_notify_watchdog_usec(), 0);
	assert_int_equal(sl_notify_enabled(), 1);

	/* The watchdog is systemd's to set; without NOTIFY_SOCKET there is no one to ping. */
	unsetenv("WATCHDOG_PID");
	unsetenv("NOTIFY_SOCKET");
	assert_int_equal(sl_notify_init(err, sizeof(err)), 0);
	assert_int_equal(sl_notify_watchdog_usec(), 0);
}

static void
test_bad_environment(void **state)
{
	struct fixture *f = *state;
	char err[256], longpath[200];

	setenv("NOTIFY_SOCKET", "relative/notify", 1);
	assert_int_equal(sl_notify_init(err, sizeof(err)), -1);
	assert_non_null(strstr(err, "invalid NOTIFY_SOCKET \"relative/notify\""));
	assert_int_equal(sl_notify_enabled(), 0);

	memset(longpath, 'x', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	setenv("NOTIFY_SOCKET", longpath, 1);
	assert_int_equal(sl_notify_init(err, sizeof(err)), -1);

	setenv("NOTIFY_SOCKET", f->path, 1);
	setenv("WATCHDOG_USEC", "30s", 1);
	assert_int_equal(sl_notify_init(err, sizeof(err)), -1);
	assert_string_equal(err,
	                    "invalid WATCHDOG_USEC \"30s\": expected a positive number of microseconds");
	assert_int_equal(sl_notify_enabled(), 0);
	setenv("WATCHDOG_USEC", "0", 1);
	assert_int_equal(sl_notify_init(err, sizeof(err)), -1);
	setenv("WATCHDOG_USEC", "1000", 1);
	setenv("WATCHDOG_PID", "me", 1);
	assert_int_equal(sl_notify_init(err, sizeof(err)), -1);
	assert_string_equal(err, "invalid WATCHDOG_PID \"me\": expected a process id");
}

#define THREADS 4
#define MESSAGES 50

static void *
sender(void *arg)
{
	int i, index = *(int *)arg;

	for (i = 0; i < MESSAGES; i++)
		if (sl_notify("STATUS=thread %d message %d", index, i) != 1)
			return (void *)1;
	return NULL;
}

static void
test_threads(void **state)
{
	struct fixture *f = *state;
	pthread_t tids[THREADS];
	int idx[THREADS], seen[THREADS] = { 0 }, i, t, m, rcvbuf = 1 << 20;
	char err[256], buf[256];
	void *rv;

	f->fd = bind_receiver(f->path);
	setsockopt(f->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	setenv("NOTIFY_SOCKET", f->path, 1);
	assert_int_equal(sl_notify_init(err, sizeof(err)), 0);
	for (i = 0; i < THREADS; i++) {
		idx[i] = i;
		assert_int_equal(pthread_create(&tids[i], NULL, sender, &idx[i]), 0);
	}
	/* Read while they send: a datagram socket's queue is short. */
	for (i = 0; i < THREADS * MESSAGES; i++) {
		receive(f->fd, buf, sizeof(buf));
		assert_int_equal(sscanf(buf, "STATUS=thread %d message %d", &t, &m), 2);
		assert_true(t >= 0 && t < THREADS);
		/* Each thread's messages arrive whole and in its own order. */
		assert_int_equal(m, seen[t]);
		seen[t]++;
	}
	for (i = 0; i < THREADS; i++) {
		pthread_join(tids[i], &rv);
		assert_null(rv);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_unset_is_noop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_path_socket, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abstract_socket, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watchdog, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_environment, setup, teardown),
		cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
