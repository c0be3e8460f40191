/* kafka_echo.c -- the Kafka half of a worker and nothing else, for the
 * latency benchmark's --echo-baseline.
 *
 *   kafka_echo BROKERS GROUP IN_TOPIC OUT_TOPIC
 *
 * Consumes IN_TOPIC in GROUP and produces each message, key and value
 * unchanged, to OUT_TOPIC, with the client settings sluice-worker gives
 * librdkafka (common/kafka.c): read_committed, offsets stored by hand and
 * committed every second, an idempotent producer with acks=all lingering
 * 50 ms, flushed as soon as a poll brought nothing more, as the worker does
 * while an executor is idle. No database, no JSON, no threads of its own:
 * its CPU per message at a given rate is what librdkafka alone costs a
 * process that takes a job and publishes a result, the floor under the
 * worker's figure at that rate. Runs until SIGTERM or SIGINT.
 */
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void
set(rd_kafka_conf_t *conf, const char *key, const char *value)
{
	char err[512];

	if (rd_kafka_conf_set(conf, key, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
		fprintf(stderr, "kafka_echo: %s: %s\n", key, err);
		exit(2);
	}
}

static rd_kafka_t *
client(rd_kafka_type_t type, const char *brokers, const char *group)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;
	char err[512];

	set(conf, "bootstrap.servers", brokers);
	if (type == RD_KAFKA_CONSUMER) {
		set(conf, "group.id", group);
		set(conf, "auto.offset.reset", "earliest");
		set(conf, "session.timeout.ms", "10000");
		set(conf, "heartbeat.interval.ms", "1000");
		set(conf, "auto.commit.interval.ms", "1000");
		set(conf, "enable.auto.offset.store", "false");
		set(conf, "queued.max.messages.kbytes", "4096");
		set(conf, "queued.min.messages", "10000");
		set(conf, "enable.partition.eof", "false");
		set(conf, "isolation.level", "read_committed");
	} else {
		set(conf, "linger.ms", "50");
		set(conf, "enable.idempotence", "true");
		set(conf, "acks", "all");
	}
	if ((rk = rd_kafka_new(type, conf, err, sizeof(err))) == NULL) {
		fprintf(stderr, "kafka_echo: %s\n", err);
		exit(1);
	}
	return rk;
}

int
main(int argc, char **argv)
{
	rd_kafka_t *consumer, *producer;
	rd_kafka_topic_partition_list_t *topics;
	rd_kafka_message_t *m;
	rd_kafka_resp_err_t err;
	int produced = 0;

	if (argc != 5) {
		fprintf(stderr, "usage: kafka_echo BROKERS GROUP IN_TOPIC OUT_TOPIC\n");
		return 2;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	consumer = client(RD_KAFKA_CONSUMER, argv[1], argv[2]);
	producer = client(RD_KAFKA_PRODUCER, argv[1], argv[2]);
	rd_kafka_poll_set_consumer(consumer);
	topics = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(topics, argv[3], RD_KAFKA_PARTITION_UA);
	if ((err = rd_kafka_subscribe(consumer, topics)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		fprintf(stderr, "kafka_echo: subscribe: %s\n", rd_kafka_err2str(err));
		return 1;
	}
	rd_kafka_topic_partition_list_destroy(topics);
	while (!stop) {
		m = rd_kafka_consumer_poll(consumer, produced ? 0 : 100);
		if (m == NULL) {
			/* Nothing more came: what was produced goes now. */
			if (produced)
				(void)rd_kafka_flush(producer, 1);
			produced = 0;
			rd_kafka_poll(producer, 0);
			continue;
		}
		if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
			err = rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(argv[4]), RD_KAFKA_V_KEY(m->key, m->key_len),
			                        RD_KAFKA_V_VALUE(m->payload, m->len),
			                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
			if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
				fprintf(stderr, "kafka_echo: produce: %s\n", rd_kafka_err2str(err));
			else
				produced = 1;
			rd_kafka_offset_store(m->rkt, m->partition, m->offset);
		}
		rd_kafka_message_destroy(m);
		rd_kafka_poll(producer, 0);
	}
	rd_kafka_consumer_close(consumer);
	rd_kafka_destroy(consumer);
	(void)rd_kafka_flush(producer, 5000);
	rd_kafka_destroy(producer);
	return 0;
}
