/* ctl_lag.c -- `sluicectl lag`: a consumer group's lag per partition, in messages and in time.
 *
 * For each partition: the group's committed offset, the high watermark, the
 * lag in messages (high watermark minus where the group would resume), and
 * the lag in time: the age of the oldest unconsumed message, read with a
 * short-lived assign-only consumer at the resume position. A partition
 * without a committed offset resumes at its low watermark, as the worker's
 * auto.offset.reset=earliest does.
 *
 * The group and topics are --group's and --topic's, else those of the worker
 * configuration given with -c (kafka.group, kafka.topics), else the topics
 * are those in which the group has committed
 * an offset (every non-internal topic of the cluster is asked): the group's
 * live subscription is not read, so a topic it subscribes to but never
 * committed in needs --topic. Committed offsets are read without joining the
 * group: running this beside the workers does not rebalance them.
 *
 * Not for: moving offsets (kafka-consumer-groups.sh --reset-offsets) or the
 * lag a worker sees of its own partitions (its /metrics has that).
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "config.h"
#include "ctl.h"
#include "ctl_common.h"

#define DEFAULT_GROUP   "sluice"
#define TIMEOUT_MS      10000
#define POLL_MS         100

struct row {
	const char *topic;         /* borrowed from the partition list */
	int32_t partition;
	int64_t committed;         /* < 0: none */
	int64_t low, high;
	int64_t lag;               /* messages */
	double lag_seconds;        /* < 0: unknown (the oldest message could not be read) */
};

static void
usage(FILE *out)
{
	fprintf(out,
	        "usage: sluicectl lag [-c FILE] [--group G] [--topic T]... [--json] [--brokers B]\n"
	        "\n"
	        "Prints a consumer group's lag per partition: committed offset, end offset,\n"
	        "lag in messages and the age in seconds of the oldest unconsumed message.\n"
	        "\n"
	        "  -c, --config FILE\n"
	        "                the worker's configuration: its group, topics, brokers and\n"
	        "                Kafka properties are the defaults of the options below\n"
	        "  --group G     consumer group (default: the configuration's, else \"" DEFAULT_GROUP "\")\n"
	        "  --topic T     a topic; repeat for several (default: the configuration's\n"
	        "                topics, else every topic in which the group has committed\n"
	        "                offsets)\n"
	        "  --json        one JSON object per partition\n"
	        "  --brokers B   Kafka brokers (default: the configuration's, else\n"
	        "                $SLUICE_KAFKA_BROKERS, else " SL_CTL_DEFAULT_BROKERS ")\n"
	        "\n"
	        "Exit status: 0, 1 when the group has no committed offsets and no --topic\n"
	        "was given, 2 usage or connection error.\n");
}

/* Returns a new consumer of group `group` that never joins it: only
 * rd_kafka_committed() is called on it. NULL with the reason in errbuf. */
static rd_kafka_t *
group_client(const char *brokers, const char *group, char *errbuf, size_t errbuf_size)
{
	rd_kafka_conf_t *conf;

	conf = sl_ctl_kafka_conf(brokers, errbuf, errbuf_size);
	if (conf == NULL)
		return NULL;
	if (sl_ctl_kafka_set(conf, "group.id", group, errbuf, errbuf_size) != 0 ||
	    sl_ctl_kafka_set(conf, "enable.auto.commit", "false", errbuf, errbuf_size) != 0) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	return sl_ctl_kafka_new(RD_KAFKA_CONSUMER, conf, errbuf, errbuf_size);
}

/* Adds every partition of every non-internal topic to parts. Returns 0, or
 * -1 with the reason in errbuf. */
static int
add_all_topics(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts, char *errbuf, size_t errbuf_size)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t err;
	int i, j;

	err = rd_kafka_metadata(rk, 1, NULL, &md, TIMEOUT_MS);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(errbuf, errbuf_size, "could not read the cluster's metadata: %s", rd_kafka_err2str(err));
		return -1;
	}
	for (i = 0; i < md->topic_cnt; i++) {
		/* __consumer_offsets, __transaction_state and the like. */
		if (md->topics[i].err != RD_KAFKA_RESP_ERR_NO_ERROR || strncmp(md->topics[i].topic, "__", 2) == 0)
			continue;
		for (j = 0; j < md->topics[i].partition_cnt; j++)
			rd_kafka_topic_partition_list_add(parts, md->topics[i].topic, md->topics[i].partitions[j].id);
	}
	rd_kafka_metadata_destroy(md);
	return 0;
}

/* Keeps in parts only the topics in which some partition has a committed
 * offset (all of their partitions). Returns a new list; parts is left alone. */
static rd_kafka_topic_partition_list_t *
committed_topics(const rd_kafka_topic_partition_list_t *parts)
{
	rd_kafka_topic_partition_list_t *out = rd_kafka_topic_partition_list_new(parts->cnt);
	int i, j;

	for (i = 0; i < parts->cnt; i++) {
		for (j = 0; j < parts->cnt; j++)
			if (parts->elems[j].offset >= 0 && strcmp(parts->elems[j].topic, parts->elems[i].topic) == 0)
				break;
		if (j < parts->cnt)
			rd_kafka_topic_partition_list_add(out, parts->elems[i].topic, parts->elems[i].partition)->offset =
			        parts->elems[i].offset;
	}
	return out;
}

/* Reads the first message at or after each lagging row's resume position
 * and sets its lag_seconds from the message's timestamp. Rows it could not
 * read keep lag_seconds -1. Returns 0, or -1 with the reason in errbuf. */
static int
oldest_ages(const char *brokers, struct row *rows, size_t n, char *errbuf, size_t errbuf_size)
{
	rd_kafka_topic_partition_list_t *parts = NULL;
	rd_kafka_message_t *m = NULL;
	rd_kafka_timestamp_type_t tstype;
	rd_kafka_resp_err_t err;
	rd_kafka_t *rk = NULL;
	int64_t deadline, ts;
	size_t i, remaining = 0;
	int rc = -1;

	parts = rd_kafka_topic_partition_list_new((int)n);
	for (i = 0; i < n; i++) {
		if (rows[i].lag <= 0)
			continue;
		rd_kafka_topic_partition_list_add(parts, rows[i].topic, rows[i].partition)->offset =
		        rows[i].committed > rows[i].low ? rows[i].committed : rows[i].low;
		remaining++;
	}
	if (remaining == 0) {
		rc = 0;
		goto out;
	}
	rk = sl_ctl_reader_new(brokers, "lag", SL_CTL_READER_EOF | SL_CTL_READER_EARLIEST, errbuf,
	                       errbuf_size);
	if (rk == NULL)
		goto out;
	err = rd_kafka_assign(rk, parts);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(errbuf, errbuf_size, "could not assign partitions: %s", rd_kafka_err2str(err));
		goto out;
	}
	deadline = sl_ctl_now_ms() + TIMEOUT_MS;
	while (remaining > 0 && sl_ctl_now_ms() < deadline) {
		m = rd_kafka_consumer_poll(rk, POLL_MS);
		if (m == NULL)
			continue;
		for (i = 0; i < n; i++)
			if (rows[i].lag > 0 && rows[i].lag_seconds < 0 && rows[i].partition == m->partition &&
			    m->rkt != NULL && strcmp(rows[i].topic, rd_kafka_topic_name(m->rkt)) == 0)
				break;
		if (i < n && m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
			ts = rd_kafka_message_timestamp(m, &tstype);
			if (tstype != RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && ts >= 0) {
				ts = sl_ctl_now_ms() - ts;
				rows[i].lag_seconds = ts > 0 ? (double)ts / 1000.0 : 0.0;
			} else {
				rows[i].lag_seconds = 0.0;
			}
			remaining--;
		} else if (i < n && m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			/* Nothing readable after all (only transaction markers). */
			rows[i].lag_seconds = 0.0;
			remaining--;
		}
		rd_kafka_message_destroy(m);
		m = NULL;
	}
	rc = 0;
out:
	if (m != NULL)
		rd_kafka_message_destroy(m);
	rd_kafka_topic_partition_list_destroy(parts);
	sl_ctl_consumer_destroy(rk);
	return rc;
}

static int
row_cmp(const void *a, const void *b)
{
	const struct row *x = a, *y = b;
	int c = strcmp(x->topic, y->topic);

	return c != 0 ? c : (x->partition > y->partition) - (x->partition < y->partition);
}

/* Prints the rows. Returns 0, or -1 when out of memory. */
static int
print_rows(const char *group, const struct row *rows, size_t n, int as_json)
{
	int64_t total = 0;
	double oldest = 0;
	size_t i;
	json_t *o;
	char *s, secs[32];

	if (!as_json)
		printf("%-40s %9s %12s %12s %10s %12s\n", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG",
		       "LAG_SECONDS");
	for (i = 0; i < n; i++) {
		const struct row *r = &rows[i];

		total += r->lag;
		if (r->lag_seconds > oldest)
			oldest = r->lag_seconds;
		if (as_json) {
			o = json_pack("{s:s, s:s, s:i, s:o, s:I, s:I, s:o}", "group", group, "topic", r->topic,
			              "partition", (int)r->partition, "committed",
			              r->committed >= 0 ? json_integer(r->committed) : json_null(), "end",
			              (json_int_t)r->high, "lag", (json_int_t)r->lag, "lag_seconds",
			              r->lag_seconds >= 0 ? json_real(r->lag_seconds) : json_null());
			s = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
			json_decref(o);
			if (s == NULL)
				return -1;
			puts(s);
			free(s);
			continue;
		}
		if (r->lag_seconds >= 0)
			snprintf(secs, sizeof(secs), "%.3f", r->lag_seconds);
		else
			snprintf(secs, sizeof(secs), "?");
		if (r->committed >= 0)
			printf("%-40s %9d %12" PRId64 " %12" PRId64 " %10" PRId64 " %12s\n", r->topic, (int)r->partition,
			       r->committed, r->high, r->lag, secs);
		else
			printf("%-40s %9d %12s %12" PRId64 " %10" PRId64 " %12s\n", r->topic, (int)r->partition, "-",
			       r->high, r->lag, secs);
	}
	if (!as_json)
		printf("group \"%s\": %" PRId64 " message%s behind, oldest unconsumed %.3f s old\n", group, total,
		       total == 1 ? "" : "s", oldest);
	return 0;
}

int
sl_ctl_lag(int argc, char **argv)
{
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "group", required_argument, NULL, 'g' },
		{ "topic", required_argument, NULL, 't' },
		{ "brokers", required_argument, NULL, 'b' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *group = NULL, *brokers = NULL, *config_path = NULL;
	struct sl_config *cfg = NULL;
	size_t k;
	rd_kafka_topic_partition_list_t *parts = NULL, *kept = NULL;
	rd_kafka_resp_err_t err;
	rd_kafka_t *rk = NULL;
	struct row *rows = NULL;
	char errbuf[1024];
	size_t n = 0;
	int opt, as_json = 0, rc = 2, i, j, n_topics = 0;

	sl_ctl_set_command("lag");
	parts = rd_kafka_topic_partition_list_new(16);
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":hc:", options, NULL)) != -1) {
		switch (opt) {
		case 'c': config_path = optarg; break;
		case 'g': group = optarg; break;
		case 'b': brokers = optarg; break;
		case 'j': as_json = 1; break;
		case 't':
			/* Partitions are added once the topic is looked up. */
			rd_kafka_topic_partition_list_add(parts, optarg, RD_KAFKA_PARTITION_UA);
			n_topics++;
			break;
		case 'h':
			usage(stdout);
			rc = 0;
			goto out;
		default:
			rc = sl_ctl_option_error(opt, argc, argv);
			goto out;
		}
	}
	if (optind != argc) {
		sl_ctl_argument_error(argv[optind]);
		goto out;
	}
	if (config_path != NULL) {
		if ((cfg = sl_ctl_config_load(config_path)) == NULL)
			goto out;
		if (group == NULL)
			group = cfg->group;
		for (k = 0; n_topics == 0 && k < cfg->n_topics; k++)
			rd_kafka_topic_partition_list_add(parts, cfg->topics[k], RD_KAFKA_PARTITION_UA);
		n_topics = parts->cnt;
	}
	if (group == NULL)
		group = DEFAULT_GROUP;
	if (*group == '\0') {
		sl_ctl_error("--group must not be empty");
		goto out;
	}
	brokers = sl_ctl_brokers(brokers);
	rk = group_client(brokers, group, errbuf, sizeof(errbuf));
	if (rk == NULL) {
		sl_ctl_error("could not create the kafka consumer: %s", errbuf);
		goto out;
	}

	/* Expand each --topic to its partitions, or take every topic. */
	kept = rd_kafka_topic_partition_list_new(16);
	if (n_topics > 0) {
		for (i = 0; i < parts->cnt; i++) {
			for (j = 0; j < i; j++)
				if (strcmp(parts->elems[j].topic, parts->elems[i].topic) == 0)
					break;
			if (j < i)
				continue; /* named twice */
			/* Offsets are left for rd_kafka_committed() to fill in. */
			if (sl_ctl_topic_add_partitions(rk, parts->elems[i].topic, RD_KAFKA_OFFSET_INVALID,
			                                TIMEOUT_MS, kept, errbuf, sizeof(errbuf)) != 0) {
				sl_ctl_error("%s (brokers \"%s\")", errbuf, brokers);
				goto out;
			}
		}
	} else if (add_all_topics(rk, kept, errbuf, sizeof(errbuf)) != 0) {
		sl_ctl_error("%s (brokers \"%s\")", errbuf, brokers);
		goto out;
	}
	rd_kafka_topic_partition_list_destroy(parts);
	parts = kept;
	kept = NULL;

	if (parts->cnt > 0) {
		err = rd_kafka_committed(rk, parts, TIMEOUT_MS);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			sl_ctl_error("could not read the committed offsets of group \"%s\": %s (brokers \"%s\")", group,
			             rd_kafka_err2str(err), brokers);
			goto out;
		}
	}
	if (n_topics == 0) {
		kept = committed_topics(parts);
		rd_kafka_topic_partition_list_destroy(parts);
		parts = kept;
		kept = NULL;
		if (parts->cnt == 0) {
			sl_ctl_error("group \"%s\" has no committed offsets; name its topics with --topic", group);
			rc = 1;
			goto out;
		}
	}

	rows = calloc(parts->cnt > 0 ? (size_t)parts->cnt : 1, sizeof(*rows));
	if (rows == NULL) {
		sl_ctl_error("out of memory");
		goto out;
	}
	for (i = 0; i < parts->cnt; i++) {
		struct row *r = &rows[n++];
		int64_t from;

		r->topic = parts->elems[i].topic;
		r->partition = parts->elems[i].partition;
		/* A per-partition error (e.g. no offset) reads as "none". */
		r->committed = parts->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR ? parts->elems[i].offset : -1;
		err = rd_kafka_query_watermark_offsets(rk, r->topic, r->partition, &r->low, &r->high, TIMEOUT_MS);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			sl_ctl_error("could not read the offsets of \"%s\" [%d]: %s", r->topic, (int)r->partition,
			             rd_kafka_err2str(err));
			goto out;
		}
		/* Where the group resumes: its offset, or the oldest message
		 * when it has none or retention deleted past it. */
		from = r->committed > r->low ? r->committed : r->low;
		r->lag = r->high > from ? r->high - from : 0;
		r->lag_seconds = r->lag > 0 ? -1 : 0;
	}
	if (oldest_ages(brokers, rows, n, errbuf, sizeof(errbuf)) != 0) {
		sl_ctl_error("could not read the oldest unconsumed messages: %s", errbuf);
		goto out;
	}
	qsort(rows, n, sizeof(*rows), row_cmp);
	if (print_rows(group, rows, n, as_json) != 0) {
		sl_ctl_error("out of memory");
		goto out;
	}
	rc = 0;
out:
	fflush(stdout);
	free(rows);
	if (kept != NULL)
		rd_kafka_topic_partition_list_destroy(kept);
	if (parts != NULL)
		rd_kafka_topic_partition_list_destroy(parts);
	/* Never subscribed: closing leaves no group membership behind. */
	sl_ctl_consumer_destroy(rk);
	sl_ctl_config_release(cfg); /* after the clients that use its properties */
	return rc;
}
