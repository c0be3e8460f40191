/* tsan_threads.h -- librdkafka's C11 threads, made visible to
 * ThreadSanitizer.
 *
 * Debian's librdkafka is built with C11 threads (builtin.features shows
 * C11THREADS), and glibc's thrd_create() starts a thread without going
 * through pthread_create(), which ThreadSanitizer intercepts to set up its
 * per-thread state: the first malloc() of such a thread (librdkafka's mock
 * cluster thread, in practice) crashes inside the sanitizer. Defined here
 * in the test executable, thrd_create() and thrd_join() win over glibc's
 * for librdkafka too, and go through the intercepted pthread functions.
 *
 * The sanitizer is also told to ignore what librdkafka does inside itself
 * (see __tsan_default_suppressions below). Only for a test binary built
 * with -fsanitize=thread; include it in one file per binary.
 */
#ifndef SL_TEST_TSAN_THREADS_H
#define SL_TEST_TSAN_THREADS_H

#if defined(__SANITIZE_THREAD__)
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>

struct tsan_thrd_start {
	thrd_start_t func;
	void *arg;
};

static void *
tsan_thrd_main(void *arg)
{
	struct tsan_thrd_start s = *(struct tsan_thrd_start *)arg;

	free(arg);
	return (void *)(intptr_t)s.func(s.arg);
}

int
thrd_create(thrd_t *thr, thrd_start_t func, void *arg)
{
	struct tsan_thrd_start *s = malloc(sizeof(*s));
	pthread_t t;

	if (s == NULL)
		return thrd_nomem;
	s->func = func;
	s->arg = arg;
	if (pthread_create(&t, NULL, tsan_thrd_main, s) != 0) {
		free(s);
		return thrd_error;
	}
	*thr = (thrd_t)t;
	return thrd_success;
}

int
thrd_join(thrd_t thr, int *res)
{
	void *ret;

	if (pthread_join((pthread_t)thr, &ret) != 0)
		return thrd_error;
	if (res != NULL)
		*res = (int)(intptr_t)ret;
	return thrd_success;
}

int
thrd_detach(thrd_t thr)
{
	return pthread_detach((pthread_t)thr) == 0 ? thrd_success : thrd_error;
}

/* glibc's mtx_t and cnd_t hold a pthread_mutex_t and a pthread_cond_t, and
 * its mtx_ and cnd_ functions call the pthread ones internally, past the
 * sanitizer: without these it sees none of librdkafka's locking. */
int
mtx_init(mtx_t *mtx, int type)
{
	pthread_mutexattr_t attr;
	int err;

	pthread_mutexattr_init(&attr);
	if (type & mtx_recursive)
		pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	err = pthread_mutex_init((pthread_mutex_t *)mtx, &attr);
	pthread_mutexattr_destroy(&attr);
	return err == 0 ? thrd_success : thrd_error;
}

int
mtx_lock(mtx_t *mtx)
{
	return pthread_mutex_lock((pthread_mutex_t *)mtx) == 0 ? thrd_success : thrd_error;
}

int
mtx_trylock(mtx_t *mtx)
{
	int err = pthread_mutex_trylock((pthread_mutex_t *)mtx);

	return err == 0 ? thrd_success : err == EBUSY ? thrd_busy : thrd_error;
}

int
mtx_timedlock(mtx_t *restrict mtx, const struct timespec *restrict ts)
{
	int err = pthread_mutex_timedlock((pthread_mutex_t *)mtx, ts);

	return err == 0 ? thrd_success : err == ETIMEDOUT ? thrd_timedout : thrd_error;
}

int
mtx_unlock(mtx_t *mtx)
{
	return pthread_mutex_unlock((pthread_mutex_t *)mtx) == 0 ? thrd_success : thrd_error;
}

void
mtx_destroy(mtx_t *mtx)
{
	pthread_mutex_destroy((pthread_mutex_t *)mtx);
}

int
cnd_init(cnd_t *cond)
{
	return pthread_cond_init((pthread_cond_t *)cond, NULL) == 0 ? thrd_success : thrd_error;
}

int
cnd_signal(cnd_t *cond)
{
	return pthread_cond_signal((pthread_cond_t *)cond) == 0 ? thrd_success : thrd_error;
}

int
cnd_broadcast(cnd_t *cond)
{
	return pthread_cond_broadcast((pthread_cond_t *)cond) == 0 ? thrd_success : thrd_error;
}

int
cnd_wait(cnd_t *cond, mtx_t *mtx)
{
	return pthread_cond_wait((pthread_cond_t *)cond, (pthread_mutex_t *)mtx) == 0 ? thrd_success : thrd_error;
}

int
cnd_timedwait(cnd_t *restrict cond, mtx_t *restrict mtx, const struct timespec *restrict ts)
{
	int err = pthread_cond_timedwait((pthread_cond_t *)cond, (pthread_mutex_t *)mtx, ts);

	return err == 0 ? thrd_success : err == ETIMEDOUT ? thrd_timedout : thrd_error;
}

void
cnd_destroy(cnd_t *cond)
{
	pthread_cond_destroy((pthread_cond_t *)cond);
}

/* librdkafka is not instrumented: its reference counts are atomics the
 * sanitizer cannot see, so a buffer it frees on another thread than the
 * one that last touched it looks like a race. The sanitizer ignores what
 * librdkafka itself does; races in our code, and between our threads, are
 * still reported. */
const char *__tsan_default_suppressions(void);

const char *
__tsan_default_suppressions(void)
{
	return "called_from_lib:librdkafka.so.1\n";
}
#endif

#endif
