/* test_kafka.c -- unit tests for kafka.c's batch cap: a producer's
 * batch.size goes under the smallest max.message.bytes of its topics, less
 * a record's framing, unless the user's value or librdkafka's default is
 * already there. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>

#include "kafka.h"

/* batch.size of conf after sl_kafka_cap_batches(limit), with `user` set on
 * conf first as the user's producer property (NULL: none). */
static long
capped(int limit, const char *user)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char errbuf[256], value[64];
	size_t size = sizeof(value);
	long out;

	if (user != NULL)
		assert_int_equal(rd_kafka_conf_set(conf, "batch.size", user, errbuf, sizeof(errbuf)), RD_KAFKA_CONF_OK);
	assert_int_equal(sl_kafka_cap_batches(limit, "results", conf, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(rd_kafka_conf_get(conf, "batch.size", value, &size), RD_KAFKA_CONF_OK);
	out = strtol(value, NULL, 10);
	rd_kafka_conf_destroy(conf);
	return out;
}

/* No limit known: librdkafka's default stays. */
static void
test_unknown_limit_changes_nothing(void **state)
{
	(void)state;
	assert_int_equal(capped(0, NULL), 1000000);
}

/* A topic below the default: batches go under it, less the framing. */
static void
test_small_topic_lowers_the_batch(void **state)
{
	(void)state;
	assert_int_equal(capped(8192, NULL), 8192 - SL_RECORD_OVERHEAD);
	assert_int_equal(capped(8192, "100000"), 8192 - SL_RECORD_OVERHEAD);
	/* Smaller than twice the framing: half the limit. */
	assert_int_equal(capped(600, NULL), 300);
}

/* Kafka's default topic limit (1 MiB + 12) and larger leave the default,
 * and a user's smaller value stays. */
static void
test_large_topic_or_small_user_value_stays(void **state)
{
	(void)state;
	assert_int_equal(capped(1048588, NULL), 1000000);
	assert_int_equal(capped(4194304, NULL), 1000000);
	assert_int_equal(capped(8192, "4000"), 4000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unknown_limit_changes_nothing),
		cmocka_unit_test(test_small_topic_lowers_the_batch),
		cmocka_unit_test(test_large_topic_or_small_user_value_stays),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
