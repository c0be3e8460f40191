/* ctl_tail.c -- `sluicectl tail`: print result events or dead letters as JSON lines.
 *
 * Result events are compact JSON already, so each is printed as its exact
 * bytes and a newline: consumers can compare copies byte for byte (a
 * redelivered job's result must be identical). Dead letters are arbitrary
 * bytes with headers, so each is wrapped in an object that shows where it is
 * and what the worker said about it.
 *
 * The reader assigns itself every partition of the topic and never commits:
 * tailing must not move any consumer group's offsets, nor leave a group
 * behind. Partitions added while it runs are not picked up.
 *
 * Not for: replaying dead letters (`sluicectl dlq`) or lag (`sluicectl lag`).
 */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "ctl.h"
#include "ctl_common.h"
#include "text.h"

#define DEFAULT_RESULT_TOPIC "job-results"
#define DEFAULT_DLQ_TOPIC    "jobs.dlq"
#define POLL_MS              200

static void
usage(FILE *out)
{
	fprintf(out,
	        "usage: sluicectl tail [--topic T] [--dlq] [--from-beginning] [--count N]\n"
	        "                      [--timeout SECONDS] [--brokers B]\n"
	        "\n"
	        "Prints each message of a topic as one JSON line on stdout, without joining or\n"
	        "committing for any consumer group.\n"
	        "\n"
	        "  --topic T          topic (default \"" DEFAULT_RESULT_TOPIC "\", with --dlq \"" DEFAULT_DLQ_TOPIC "\")\n"
	        "  --dlq              print dead letters: {\"topic\",\"partition\",\"offset\",\"key\",\n"
	        "                     \"value\",\"headers\":{name:value}}; a key or value that is not\n"
	        "                     UTF-8 is given as \"key_base64\" / \"value_base64\", header values\n"
	        "                     likewise under \"headers_base64\"\n"
	        "  --from-beginning   start at the oldest message (default: only new messages)\n"
	        "  --count N          stop after N messages\n"
	        "  --timeout SECONDS  stop after SECONDS without a message\n"
	        "  --brokers B        Kafka brokers (default: $SLUICE_KAFKA_BROKERS, else " SL_CTL_DEFAULT_BROKERS ")\n"
	        "\n"
	        "Without --dlq each line is the message value exactly as stored (\"null\" for\n"
	        "an empty one); on a terminal, control characters and invalid UTF-8 are shown\n"
	        "as \\xNN. Without --count or --timeout it runs until SIGINT or SIGTERM.\n"
	        "Exit status: 0, 1 when --timeout ended it before --count messages came,\n"
	        "2 usage or connection error.\n");
}

/* Returns 1 when the len bytes at p are valid UTF-8 (jansson's own check). */
static int
is_utf8(const void *p, size_t len)
{
	json_t *v = json_stringn(p, len);

	json_decref(v);
	return v != NULL;
}

/* Builds the dead-letter line for m: a new reference, or NULL when out of memory. */
static json_t *
dlq_line(const rd_kafka_message_t *m)
{
	json_t *line, *headers = NULL, *headers_b64 = NULL;
	rd_kafka_headers_t *hdrs = NULL;
	const char *name;
	const void *val;
	size_t i, size;
	char *b64;
	int r;

	line = json_pack("{s:s, s:i, s:I}", "topic", rd_kafka_topic_name(m->rkt), "partition",
	                 (int)m->partition, "offset", (json_int_t)m->offset);
	if (line == NULL)
		return NULL;
	if (sl_ctl_json_set_bytes(line, "key", "key_base64", m->key, m->key_len) != 0 ||
	    sl_ctl_json_set_bytes(line, "value", "value_base64", m->payload, m->len) != 0)
		goto err;
	headers = json_object();
	headers_b64 = json_object();
	if (headers == NULL || headers_b64 == NULL)
		goto err;
	/* Borrowed from m; a message without headers has none to show. */
	if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
		/* A repeated name keeps its last value: the worker writes each once. */
		for (i = 0; rd_kafka_header_get_all(hdrs, i, &name, &val, &size) ==
		                RD_KAFKA_RESP_ERR_NO_ERROR; i++) {
			/* JSON cannot name a member with bytes that are not UTF-8. */
			if (!is_utf8(name, strlen(name)))
				continue;
			json_object_del(headers, name);
			json_object_del(headers_b64, name);
			if (val == NULL || is_utf8(val, size)) {
				if (sl_ctl_json_set_bytes(headers, name, name, val, size) != 0)
					goto err;
				continue;
			}
			b64 = sl_ctl_base64(val, size);
			if (b64 == NULL)
				goto err;
			r = json_object_set_new(headers_b64, name, json_string(b64));
			free(b64);
			if (r != 0)
				goto err;
		}
	}
	if (json_object_set_new(line, "headers", headers) != 0) {
		headers = NULL;    /* stolen even on failure */
		goto err;
	}
	headers = NULL;
	if (json_object_size(headers_b64) > 0 && json_object_set(line, "headers_base64", headers_b64) != 0)
		goto err;
	json_decref(headers_b64);
	return line;
err:
	json_decref(headers);
	json_decref(headers_b64);
	json_decref(line);
	return NULL;
}

/* Prints one message as a line. Returns 0, or -1 when out of memory. */
static int
print_message(const rd_kafka_message_t *m, int dlq)
{
	json_t *line;
	char *s;

	if (!dlq) {
		if (m->payload == NULL || m->len == 0) {
			fputs("null", stdout);
		} else if (isatty(STDOUT_FILENO)) {
			/* A terminal gets no escape sequences from a message;
			 * a pipe or a file gets the bytes as stored. */
			if ((s = malloc(m->len * 4 + 1)) == NULL)
				return -1;
			sl_text_escape_untrusted(m->payload, m->len, s, m->len * 4 + 1);
			fputs(s, stdout);
			free(s);
		} else {
			fwrite(m->payload, 1, m->len, stdout);
		}
		putchar('\n');
		return 0;
	}
	line = dlq_line(m);
	s = line ? json_dumps(line, JSON_COMPACT) : NULL;
	json_decref(line);
	if (s == NULL)
		return -1;
	puts(s);
	free(s);
	return 0;
}

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
sl_ctl_tail(int argc, char **argv)
{
	static const struct option options[] = {
		{ "topic", required_argument, NULL, 't' },
		{ "dlq", no_argument, NULL, 'q' },
		{ "from-beginning", no_argument, NULL, 'B' },
		{ "count", required_argument, NULL, 'c' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "brokers", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *topic = NULL, *brokers = NULL;
	rd_kafka_topic_partition_list_t *parts = NULL;
	rd_kafka_message_t *m = NULL;
	rd_kafka_t *rk = NULL;
	rd_kafka_resp_err_t err;
	char errbuf[1024];
	int opt, dlq = 0, from_beginning = 0, rc = 2;
	long count = -1, seen = 0;
	double timeout = -1, last;

	sl_ctl_set_command("tail");
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
		switch (opt) {
		case 't': topic = optarg; break;
		case 'q': dlq = 1; break;
		case 'B': from_beginning = 1; break;
		case 'b': brokers = optarg; break;
		case 'c':
			if (sl_ctl_parse_long(optarg, 1, LONG_MAX, &count) != 0) {
				sl_ctl_error("--count must be a positive number, not \"%s\"", optarg);
				return 2;
			}
			break;
		case 'T':
			if (sl_ctl_parse_seconds(optarg, &timeout) != 0) {
				sl_ctl_error("--timeout must be a number of seconds, not \"%s\"", optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return sl_ctl_option_error(opt, argc, argv);
		}
	}
	if (optind != argc)
		return sl_ctl_argument_error(argv[optind]);
	if (topic == NULL)
		topic = dlq ? DEFAULT_DLQ_TOPIC : DEFAULT_RESULT_TOPIC;
	brokers = sl_ctl_brokers(brokers);

	rk = sl_ctl_reader_new(brokers, "tail", 0, errbuf, sizeof(errbuf));
	if (rk == NULL) {
		sl_ctl_error("could not create the kafka consumer: %s", errbuf);
		goto out;
	}
	parts = rd_kafka_topic_partition_list_new(16);
	if (sl_ctl_topic_add_partitions(rk, topic,
	                                from_beginning ? RD_KAFKA_OFFSET_BEGINNING : RD_KAFKA_OFFSET_END, 10000,
	                                parts, errbuf, sizeof(errbuf)) != 0) {
		sl_ctl_error("%s (brokers \"%s\")", errbuf, brokers);
		goto out;
	}
	err = rd_kafka_assign(rk, parts);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		sl_ctl_error("could not assign the partitions of topic \"%s\": %s", topic,
		             rd_kafka_err2str(err));
		goto out;
	}

	sl_ctl_catch_interrupts();

	rc = 0;
	last = now_seconds();
	/* SIGINT/SIGTERM ends the loop. */
	while (!sl_ctl_interrupted() && (count < 0 || seen < count)) {
		m = rd_kafka_consumer_poll(rk, POLL_MS);
		if (m == NULL) {
			/* Idle: show what is buffered, then see whether to give up. */
			fflush(stdout);
			if (timeout >= 0 && now_seconds() - last >= timeout) {
				rc = count >= 0 ? 1 : 0;
				break;
			}
			continue;
		}
		if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			/* Report and go on, unless the client can no longer work at all. */
			if (sl_ctl_consumer_error(m) != 0) {
				rc = 2;
				goto out;
			}
			rd_kafka_message_destroy(m);
			m = NULL;
			continue;
		}
		if (print_message(m, dlq) != 0) {
			sl_ctl_error("out of memory");
			rc = 2;
			goto out;
		}
		rd_kafka_message_destroy(m);
		m = NULL;
		seen++;
		last = now_seconds();
	}
	if (count >= 0 && seen < count && rc == 0 && timeout >= 0)
		rc = 1;
out:
	fflush(stdout);
	if (m != NULL)
		rd_kafka_message_destroy(m);
	if (parts != NULL)
		rd_kafka_topic_partition_list_destroy(parts);
	sl_ctl_consumer_destroy(rk);
	return rc;
}
