/* test_dispatch.c -- unit tests for dispatch.c: a key's jobs stay on one
 * executor while any is there, new keys go to the least loaded, a key
 * with nothing there may move, colliding slots survive removals, the table
 * grows, a long randomised run against a naive model, and when an executor
 * is idle.
 *
 * The file includes dispatch.c itself, to reach the table's slots; the
 * linker then takes no dispatch.o from libsluice.a.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "dispatch.c"

/* One key's jobs follow it while any is at an executor. */
static void
test_key_stays_while_in_flight(void **state)
{
	struct sl_dispatch d;
	unsigned e;

	(void)state;
	assert_int_equal(sl_dispatch_init(&d, 4, 16), 0);
	e = sl_dispatch_take(&d, 42);
	sl_dispatch_take(&d, 7); /* others load the rest */
	sl_dispatch_take(&d, 8);
	sl_dispatch_take(&d, 9);
	assert_int_equal(sl_dispatch_take(&d, 42), e);
	assert_int_equal(sl_dispatch_take(&d, 42), e);
	assert_int_equal(d.load[e], 3);
	sl_dispatch_done(&d, 42, e);
	sl_dispatch_done(&d, 42, e);
	assert_int_equal(sl_dispatch_take(&d, 42), e); /* one is still there */
	sl_dispatch_free(&d);
}

/* Distinct keys spread over the executors, a new one to the least loaded;
 * a key with nothing left at its executor goes where there is room. */
static void
test_new_keys_go_to_the_least_loaded(void **state)
{
	struct sl_dispatch d;
	unsigned seen[4] = { 0 }, e, busy;
	uint64_t k;

	(void)state;
	assert_int_equal(sl_dispatch_init(&d, 4, 16), 0);
	for (k = 1; k <= 4; k++)
		seen[sl_dispatch_take(&d, k)]++;
	for (e = 0; e < 4; e++)
		assert_int_equal(seen[e], 1);
	/* Key 1's executor gets two more of key 1: the next new key avoids it. */
	busy = sl_dispatch_take(&d, 1);
	sl_dispatch_take(&d, 1);
	for (k = 5; k <= 7; k++)
		assert_int_not_equal(sl_dispatch_take(&d, k), busy);
	/* Key 1 finished everywhere: it goes to the least loaded, not back. */
	sl_dispatch_done(&d, 1, busy);
	sl_dispatch_done(&d, 1, busy);
	sl_dispatch_done(&d, 1, busy);
	d.load[busy] += 10; /* its executor is busy with other keys */
	assert_int_not_equal(sl_dispatch_take(&d, 1), busy);
	sl_dispatch_free(&d);
}

/* Idle: some executor holds no job, however many the others hold. */
static void
test_any_idle(void **state)
{
	struct sl_dispatch d;
	unsigned last;
	int i;

	(void)state;
	assert_int_equal(sl_dispatch_init(&d, 3, 16), 0);
	assert_true(sl_dispatch_any_idle(&d));
	for (i = 0; i < 40; i++)
		sl_dispatch_take(&d, 100); /* one key: one executor, 40 jobs */
	assert_true(sl_dispatch_any_idle(&d));
	sl_dispatch_take(&d, 1);
	last = sl_dispatch_take(&d, 2);
	assert_false(sl_dispatch_any_idle(&d));
	sl_dispatch_done(&d, 2, last);
	assert_true(sl_dispatch_any_idle(&d));
	sl_dispatch_free(&d);
}

/* Hashes that share a home slot: removing the first keeps the others
 * found (the run shifts back), and their counts intact. */
static void
test_collisions_survive_removal(void **state)
{
	struct sl_dispatch d;
	uint64_t keys[5], k;
	unsigned ex[5], n = 0, i;
	size_t home;

	(void)state;
	assert_int_equal(sl_dispatch_init(&d, 3, 16), 0);
	home = slot_of(&d, 1);
	keys[n++] = 1;
	for (k = 2; n < 5; k++)
		if (slot_of(&d, k) == home)
			keys[n++] = k;
	for (i = 0; i < 5; i++)
		ex[i] = sl_dispatch_take(&d, keys[i]);
	sl_dispatch_done(&d, keys[0], ex[0]);
	sl_dispatch_done(&d, keys[2], ex[2]);
	assert_int_equal(d.used, 3);
	for (i = 1; i < 5; i += 2) {
		assert_int_equal(find(&d, keys[i])->count, 1);
		assert_int_equal(sl_dispatch_take(&d, keys[i]), ex[i]);
	}
	assert_int_equal(find(&d, keys[4])->count, 1);
	sl_dispatch_free(&d);
}

/* Random takes and dones against a naive model: per key its executor and
 * count, per executor its load; the table grows past its first size. */
static void
test_random_against_a_model(void **state)
{
	enum { KEYS = 3000, EXECUTORS = 7, STEPS = 200000 };
	static unsigned count[KEYS], where[KEYS];
	unsigned long long load[EXECUTORS] = { 0 };
	struct sl_dispatch d;
	unsigned i, e;
	uint64_t key;

	(void)state;
	srand(7);
	memset(count, 0, sizeof(count));
	assert_int_equal(sl_dispatch_init(&d, EXECUTORS, 8), 0);
	for (i = 0; i < STEPS; i++) {
		key = (uint64_t)(rand() % KEYS);
		if (rand() % 2 == 0 || count[key] == 0) {
			e = sl_dispatch_take(&d, key * 0x9e3779b97f4a7c15ULL);
			if (count[key] > 0)
				assert_int_equal(e, where[key]);
			where[key] = e;
			count[key]++;
			load[e]++;
		} else {
			sl_dispatch_done(&d, key * 0x9e3779b97f4a7c15ULL, where[key]);
			count[key]--;
			load[where[key]]--;
		}
	}
	for (e = 0; e < EXECUTORS; e++)
		assert_int_equal(d.load[e], load[e]);
	for (key = 0; key < KEYS; key++)
		while (count[key] > 0) {
			sl_dispatch_done(&d, key * 0x9e3779b97f4a7c15ULL, where[key]);
			count[key]--;
		}
	assert_int_equal(d.used, 0);
	for (e = 0; e < EXECUTORS; e++)
		assert_int_equal(d.load[e], 0);
	assert_true(d.mask + 1 > 64);
	sl_dispatch_free(&d);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_stays_while_in_flight),
		cmocka_unit_test(test_new_keys_go_to_the_least_loaded),
		cmocka_unit_test(test_collisions_survive_removal),
		cmocka_unit_test(test_random_against_a_model),
		cmocka_unit_test(test_any_idle),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
