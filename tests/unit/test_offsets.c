/* test_offsets.c -- unit tests for offsets.c: the committable offset under
 * in-order, out-of-order and gapped completion, refused calls, reset, ring
 * growth across the wrap-around, and a long randomised run against a naive
 * model.
 *
 * The file includes offsets.c itself, so that the tests can check the memory
 * bound on the ring's private fields; the linker then takes no offsets.o from
 * libsluice.a, as every symbol it defines is already here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "offsets.c"

/* The bound promised in offsets.c's opening paragraph. */
static void
assert_memory_bound(const sl_offsets_t *t)
{
	assert_true(t->len <= 2 * t->pending);
	assert_true(t->cap <= RING_MIN_CAP || t->cap <= 8 * t->pending);
	assert_true(t->len == 0 || !at(t, 0)->done);
}

static void
test_empty(void **state)
{
	sl_offsets_t *t = sl_offsets_new();

	(void)state;
	assert_non_null(t);
	assert_int_equal(sl_offsets_committable(t), -1);
	assert_int_equal(sl_offsets_in_flight(t), 0);
	assert_int_equal(sl_offsets_done(t, 0), -1);
	assert_int_equal(sl_offsets_committable(t), -1);
	sl_offsets_destroy(t);
	sl_offsets_destroy(NULL);
}

static void
test_in_order(void **state)
{
	sl_offsets_t *t = sl_offsets_new();
	int64_t o;

	(void)state;
	for (o = 0; o < 10; o++)
		assert_int_equal(sl_offsets_add(t, o), 0);
	assert_int_equal(sl_offsets_in_flight(t), 10);
	assert_int_equal(sl_offsets_committable(t), 0);
	for (o = 0; o < 10; o++) {
		assert_int_equal(sl_offsets_done(t, o), 0);
		assert_int_equal(sl_offsets_committable(t), o + 1);
		assert_int_equal(sl_offsets_in_flight(t), (size_t)(9 - o));
	}
	sl_offsets_destroy(t);
}

static void
test_out_of_order(void **state)
{
	sl_offsets_t *t = sl_offsets_new();
	int64_t o;

	(void)state;
	for (o = 10; o < 15; o++)
		assert_int_equal(sl_offsets_add(t, o), 0);
	assert_int_equal(sl_offsets_done(t, 12), 0);
	assert_int_equal(sl_offsets_committable(t), 10);
	assert_int_equal(sl_offsets_done(t, 14), 0);
	assert_int_equal(sl_offsets_committable(t), 10);
	assert_int_equal(sl_offsets_done(t, 10), 0);
	assert_int_equal(sl_offsets_committable(t), 11);
	assert_int_equal(sl_offsets_done(t, 11), 0);
	assert_int_equal(sl_offsets_committable(t), 13);
	assert_int_equal(sl_offsets_in_flight(t), 1);
	assert_int_equal(sl_offsets_done(t, 13), 0);
	assert_int_equal(sl_offsets_committable(t), 15);
	assert_int_equal(sl_offsets_in_flight(t), 0);
	sl_offsets_destroy(t);
}

static void
test_gaps(void **state)
{
	sl_offsets_t *t = sl_offsets_new();

	(void)state;
	assert_int_equal(sl_offsets_add(t, 5), 0);
	assert_int_equal(sl_offsets_add(t, 7), 0);
	assert_int_equal(sl_offsets_add(t, 10), 0);
	assert_int_equal(sl_offsets_committable(t), 5);
	assert_int_equal(sl_offsets_done(t, 6), -1);
	assert_int_equal(sl_offsets_done(t, 7), 0);
	assert_int_equal(sl_offsets_committable(t), 5);
	assert_int_equal(sl_offsets_done(t, 5), 0);
	assert_int_equal(sl_offsets_committable(t), 10);
	assert_int_equal(sl_offsets_done(t, 10), 0);
	assert_int_equal(sl_offsets_committable(t), 11);
	/* A later fetch after a gap moves committable back to the new offset. */
	assert_int_equal(sl_offsets_add(t, 1000), 0);
	assert_int_equal(sl_offsets_committable(t), 1000);
	sl_offsets_destroy(t);
}

static void
test_done_unknown_or_twice(void **state)
{
	sl_offsets_t *t = sl_offsets_new();

	(void)state;
	assert_int_equal(sl_offsets_add(t, 1), 0);
	assert_int_equal(sl_offsets_add(t, 3), 0);
	assert_int_equal(sl_offsets_add(t, 4), 0);
	assert_int_equal(sl_offsets_done(t, 0), -1);
	assert_int_equal(sl_offsets_done(t, 2), -1);
	assert_int_equal(sl_offsets_done(t, 5), -1);
	assert_int_equal(sl_offsets_done(t, INT64_MAX), -1);
	assert_int_equal(sl_offsets_done(t, -1), -1);
	assert_int_equal(sl_offsets_in_flight(t), 3);
	/* Done twice: once at the front (popped), once in the middle (kept). */
	assert_int_equal(sl_offsets_done(t, 1), 0);
	assert_int_equal(sl_offsets_done(t, 1), -1);
	assert_int_equal(sl_offsets_done(t, 4), 0);
	assert_int_equal(sl_offsets_done(t, 4), -1);
	assert_int_equal(sl_offsets_in_flight(t), 1);
	assert_int_equal(sl_offsets_committable(t), 3);
	sl_offsets_destroy(t);
}

static void
test_add_not_increasing(void **state)
{
	sl_offsets_t *t = sl_offsets_new();

	(void)state;
	assert_int_equal(sl_offsets_add(t, -1), -1);
	assert_int_equal(sl_offsets_committable(t), -1);
	assert_int_equal(sl_offsets_add(t, 5), 0);
	assert_int_equal(sl_offsets_add(t, 5), -1);
	assert_int_equal(sl_offsets_add(t, 4), -1);
	assert_int_equal(sl_offsets_in_flight(t), 1);
	assert_int_equal(sl_offsets_committable(t), 5);
	/* Still refused once everything is done: the last one added counts. */
	assert_int_equal(sl_offsets_done(t, 5), 0);
	assert_int_equal(sl_offsets_add(t, 5), -1);
	assert_int_equal(sl_offsets_committable(t), 6);
	assert_int_equal(sl_offsets_add(t, 6), 0);
	assert_int_equal(sl_offsets_add(t, 0), -1);
	assert_int_equal(sl_offsets_add(t, INT64_MAX - 1), 0);
	assert_int_equal(sl_offsets_committable(t), 6);
	sl_offsets_destroy(t);
}

static void
test_reset(void **state)
{
	sl_offsets_t *t = sl_offsets_new();
	int64_t o;

	(void)state;
	for (o = 100; o < 200; o++)
		assert_int_equal(sl_offsets_add(t, o), 0);
	assert_int_equal(sl_offsets_done(t, 150), 0);
	sl_offsets_reset(t);
	assert_int_equal(sl_offsets_committable(t), -1);
	assert_int_equal(sl_offsets_in_flight(t), 0);
	assert_int_equal(sl_offsets_done(t, 100), -1);
	/* A re-assigned partition may start below where it was revoked. */
	assert_int_equal(sl_offsets_add(t, 50), 0);
	assert_int_equal(sl_offsets_committable(t), 50);
	assert_int_equal(sl_offsets_done(t, 50), 0);
	assert_int_equal(sl_offsets_committable(t), 51);
	sl_offsets_reset(t);
	sl_offsets_reset(t);
	assert_int_equal(sl_offsets_committable(t), -1);
	sl_offsets_destroy(t);
}

/* Moves the front of the ring forward, then adds past the end of the array
 * so the entries wrap around, then grows the ring while it is wrapped. */
static void
test_ring_wraparound_growth(void **state)
{
	sl_offsets_t *t = sl_offsets_new();
	int64_t o;

	(void)state;
	for (o = 0; o < 12; o++)
		assert_int_equal(sl_offsets_add(t, o * 3), 0);
	for (o = 0; o < 8; o++)
		assert_int_equal(sl_offsets_done(t, o * 3), 0);
	assert_int_equal(t->cap, RING_MIN_CAP);
	assert_int_equal(t->head, 8);
	assert_int_equal(sl_offsets_committable(t), 24);
	/* 4 entries at indices 8..11; 12 more wrap to indices 12..15, 0..7. */
	for (o = 12; o < 24; o++)
		assert_int_equal(sl_offsets_add(t, o * 3), 0);
	assert_int_equal(t->len, RING_MIN_CAP);
	assert_int_equal(t->cap, RING_MIN_CAP);
	assert_true(t->head + t->len > t->cap);
	/* Growing now must unwrap the entries in order. */
	assert_int_equal(sl_offsets_add(t, 72), 0);
	assert_int_equal(t->cap, 2 * RING_MIN_CAP);
	assert_int_equal(sl_offsets_committable(t), 24);
	/* Every entry is still found by the binary search, in any order. */
	for (o = 24; o >= 8; o--) {
		assert_int_equal(sl_offsets_done(t, o * 3), 0);
		assert_memory_bound(t);
	}
	assert_int_equal(sl_offsets_committable(t), 73);
	assert_int_equal(sl_offsets_in_flight(t), 0);
	sl_offsets_destroy(t);
}

/* One job that never finishes, a million that do: the committable offset
 * stays at the stuck one and the ring stays small. */
static void
test_long_job_bounded_memory(void **state)
{
	sl_offsets_t *t = sl_offsets_new();
	int64_t o;

	(void)state;
	assert_int_equal(sl_offsets_add(t, 0), 0);
	for (o = 1; o <= 1000000; o++) {
		assert_int_equal(sl_offsets_add(t, o), 0);
		if (o % 3 == 0) {
			assert_int_equal(sl_offsets_done(t, o - 2), 0);
			assert_int_equal(sl_offsets_done(t, o), 0);
			assert_int_equal(sl_offsets_done(t, o - 1), 0);
		}
	}
	assert_int_equal(sl_offsets_committable(t), 0);
	assert_int_equal(sl_offsets_in_flight(t), 2);
	assert_true(t->cap <= RING_MIN_CAP);
	assert_int_equal(sl_offsets_done(t, 1000000), 0);
	assert_int_equal(sl_offsets_done(t, 0), 0);
	assert_int_equal(sl_offsets_committable(t), 1000001);
	sl_offsets_destroy(t);
}

/* xorshift64*: a fixed seed makes a failure reproducible. */
static uint64_t
next_random(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

/* 100k offsets with random gaps, added and finished in random interleaving
 * and order; after every step the tracker must agree with a naive model that
 * scans for the lowest unfinished offset. */
static void
test_random_against_model(void **state)
{
	enum { N = 100000 };
	int64_t *offsets = malloc(N * sizeof(*offsets));
	char *done = calloc(N, 1);
	size_t *pending = malloc(N * sizeof(*pending)); /* indices not yet done */
	size_t n_added = 0, n_pending = 0, lo = 0, k, idx, i;
	uint64_t seed = 0x5eed5eed1234ULL;
	int64_t next = 0, want;
	sl_offsets_t *t = sl_offsets_new();

	(void)state;
	assert_non_null(offsets);
	assert_non_null(done);
	assert_non_null(pending);
	while (n_added < N || n_pending > 0) {
		/* Bias towards adding while the window is small, so the number in
		 * flight wanders up into the thousands and back down. */
		int add = n_added < N &&
		          (n_pending == 0 || next_random(&seed) % 1000 < (n_pending < 4000 ? 600u : 400u));
		if (add) {
			next += 1 + (int64_t)(next_random(&seed) % 4 == 0 ? next_random(&seed) % 50 : 0);
			offsets[n_added] = next;
			assert_int_equal(sl_offsets_add(t, next), 0);
			pending[n_pending++] = n_added++;
		} else {
			k = (size_t)(next_random(&seed) % n_pending);
			idx = pending[k];
			pending[k] = pending[--n_pending];
			assert_int_equal(sl_offsets_done(t, offsets[idx]), 0);
			done[idx] = 1;
			if (next_random(&seed) % 16 == 0)
				assert_int_equal(sl_offsets_done(t, offsets[idx]), -1);
		}
		while (lo < n_added && done[lo])
			lo++;
		want = lo < n_added ? offsets[lo] : offsets[n_added - 1] + 1;
		assert_int_equal(sl_offsets_committable(t), want);
		assert_int_equal(sl_offsets_in_flight(t), n_pending);
		assert_memory_bound(t);
	}
	for (i = 0; i < N; i += 997)
		assert_int_equal(sl_offsets_done(t, offsets[i]), -1);
	assert_int_equal(sl_offsets_committable(t), next + 1);
	sl_offsets_destroy(t);
	free(offsets);
	free(done);
	free(pending);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_in_order),
		cmocka_unit_test(test_out_of_order),
		cmocka_unit_test(test_gaps),
		cmocka_unit_test(test_done_unknown_or_twice),
		cmocka_unit_test(test_add_not_increasing),
		cmocka_unit_test(test_reset),
		cmocka_unit_test(test_ring_wraparound_growth),
		cmocka_unit_test(test_long_job_bounded_memory),
		cmocka_unit_test(test_random_against_model),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
