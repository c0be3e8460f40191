/* clock.c -- the worker's one clock: monotonic seconds for deadlines,
 * timeouts and durations. Its own file so that every module can ask the
 * time without depending on the consumer loop. */
#include "clock.h"

#include <time.h>

double
sl_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
