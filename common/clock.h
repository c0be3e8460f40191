/* clock.h -- the worker's one clock (clock.c). */
#ifndef SL_CLOCK_H
#define SL_CLOCK_H

/* Seconds on the monotonic clock: for deadlines and durations, never for
 * timestamps that leave the process. Any thread. */
double sl_now(void);

#endif
