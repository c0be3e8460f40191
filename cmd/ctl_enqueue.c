/* ctl_enqueue.c -- `sluicectl enqueue`: build job CloudEvents and produce them.
 *
 * One job from --data, or one per line of stdin. Each becomes a CloudEvents
 * 1.0 structured JSON event (specversion, id, source, type, time,
 * datacontenttype, data; subject when given) produced with acks=all and
 * idempotence, so a job reported as enqueued is durably in Kafka. Production
 * is asynchronous (delivery reports are counted as they arrive, the producer
 * is flushed at the end) so that bulk input runs at the client's speed.
 *
 * Input is checked before it is produced: a bad line stops the run at that
 * line, after the jobs of the lines before it have been delivered, so the
 * operator can fix the line and resume from it. Data is validated against
 * the job type's JSON Schema unless --no-validate.
 *
 * Not for: producing arbitrary bytes (use kcat) or replaying dead letters
 * (`sluicectl dlq`).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "ctl.h"
#include "ctl_common.h"
#include "event.h"
#include "schema.h"

#define DEFAULT_TOPIC      "jobs"
#define DEFAULT_SOURCE     "sluicectl"
#define DEFAULT_SCHEMA_DIR "schemas/jobs"

/* ---- schemas ------------------------------------------------------------
 * Each job type's schema (DIR/<type>.json) is compiled on first use and kept
 * for the rest of the run; validate_data() and schema_cache_clear() are the
 * only code that touches common/schema.h.
 */

struct schema_entry {
	char *type;                /* owned */
	sl_schema_t *schema;       /* owned */
};

struct schema_cache {
	const char *dir;           /* borrowed (argv or a literal) */
	struct schema_entry *v;
	size_t n, cap;
};

/* Releases every loaded schema; the cache can be used again afterwards. */
static void
schema_cache_clear(struct schema_cache *c)
{
	size_t i;

	for (i = 0; i < c->n; i++) {
		free(c->v[i].type);
		sl_schema_destroy(c->v[i].schema);
		c->v[i].schema = NULL;
	}
	free(c->v);
	c->v = NULL;
	c->n = c->cap = 0;
}

/* Returns 1 when `type` can be used as a file name: letters, digits, '.',
 * '_' and '-', not starting with '.', so it can never leave the folder. */
static int
type_is_file_name(const char *type)
{
	return *type != '\0' && *type != '.' &&
	       strspn(type, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") ==
	               strlen(type);
}

/* Validates `data` (borrowed) against the schema of `type`, loaded from
 * <dir>/<type>.json on first use and kept in c. Returns 0 when valid, 1 when
 * invalid (errbuf says where and why), -1 when the type has no usable schema
 * (errbuf says why). */
static int
validate_data(struct schema_cache *c, const char *type, json_t *data, char *errbuf, size_t errbuf_size)
{
	struct schema_entry *e = NULL, *grown;
	struct sl_schema_error errs[4];
	sl_schema_t *schema;
	char path[512], why[768];
	size_t i, n = 0;
	int r;

	for (i = 0; i < c->n; i++) {
		if (strcmp(c->v[i].type, type) == 0) {
			e = &c->v[i];
			break;
		}
	}
	if (e == NULL) {
		if (!type_is_file_name(type)) {
			snprintf(errbuf, errbuf_size, "job type \"%s\" cannot name a schema file "
			                              "(use --no-validate to skip validation)", type);
			return -1;
		}
		if ((size_t)snprintf(path, sizeof(path), "%s/%s.json", c->dir, type) >= sizeof(path)) {
			snprintf(errbuf, errbuf_size, "schema path for job type \"%.64s...\" is too long", type);
			return -1;
		}
		/* Said apart from load errors: the usual mistake is the wrong folder. */
		if (access(path, F_OK) != 0) {
			snprintf(errbuf, errbuf_size, "no schema for job type \"%s\" (no file \"%s\"; use "
			         "--schema-dir, or --no-validate to skip validation)", type, path);
			return -1;
		}
		schema = sl_schema_load_file(path, NULL, 0, errbuf, errbuf_size);
		if (schema == NULL)
			return -1;
		if (c->n == c->cap) {
			c->cap = c->cap ? c->cap * 2 : 8;
			grown = realloc(c->v, c->cap * sizeof(*grown));
			if (grown == NULL) {
				sl_schema_destroy(schema);
				snprintf(errbuf, errbuf_size, "out of memory");
				return -1;
			}
			c->v = grown;
		}
		e = &c->v[c->n];
		e->type = strdup(type);
		if (e->type == NULL) {
			sl_schema_destroy(schema);
			snprintf(errbuf, errbuf_size, "out of memory");
			return -1;
		}
		e->schema = schema;
		c->n++;
	}
	r = sl_schema_validate(e->schema, data, errs, sizeof(errs) / sizeof(errs[0]), &n);
	if (r != 0) {
		sl_schema_errors_format(errs, n, why, sizeof(why));
		snprintf(errbuf, errbuf_size, "data does not match the schema of \"%s\": %s", type, why);
		return r == 1 ? 1 : -1;
	}
	return 0;
}



/* What the delivery report needs to name its job; one per produced message,
 * freed by the delivery report callback. */
struct job_ref {
	size_t type_off;           /* type starts at text + type_off */
	char text[];               /* id NUL type NUL */
};

struct enqueue {
	/* options */
	const char *topic, *type, *key, *source, *id, *subject, *data, *brokers;
	int32_t partition;
	int validate, verbose;

	rd_kafka_t *rk;
	rd_kafka_topic_t *rkt;
	struct schema_cache schemas;

	/* Counters, updated by the delivery report callback (main thread). */
	size_t produced, delivered, failed;
	char first_failure[1024];
};

static void
usage(FILE *out)
{
	fprintf(out,
	        "usage: sluicectl enqueue --type TYPE --data JSON [OPTIONS]\n"
	        "       sluicectl enqueue [--type TYPE] [OPTIONS] < lines\n"
	        "\n"
	        "Builds CloudEvents 1.0 jobs and produces them to Kafka (acks=all, idempotent).\n"
	        "\n"
	        "  --topic T         topic (default \"" DEFAULT_TOPIC "\")\n"
	        "  --type TYPE       job type (CloudEvents type), e.g. ledger.transfer\n"
	        "  --data JSON       the job's data, a JSON object; without it, stdin is read\n"
	        "  --key KEY         Kafka key, the ordering key (default: none)\n"
	        "  --source SRC      CloudEvents source (default \"" DEFAULT_SOURCE "\")\n"
	        "  --id ID           CloudEvents id (default: a new UUID); only with --data\n"
	        "  --subject S       CloudEvents subject (default: none)\n"
	        "  --partition N     produce to partition N (default: by key)\n"
	        "  --brokers B       Kafka brokers (default: $SLUICE_KAFKA_BROKERS, else " SL_CTL_DEFAULT_BROKERS ")\n"
	        "  --no-validate     do not check data against the job type's JSON Schema\n"
	        "  --schema-dir DIR  where <type>.json schemas are (default ./" DEFAULT_SCHEMA_DIR ")\n"
	        "  --verbose         print each delivered job as a JSON line on stdout:\n"
	        "                    {\"id\",\"type\",\"key\",\"topic\",\"partition\",\"offset\"}\n"
	        "\n"
	        "Stdin: one JSON object per line (blank lines are skipped). A line whose only\n"
	        "members are \"data\" (required, an object) and any of \"type\", \"key\", \"id\",\n"
	        "\"source\", \"subject\" is a whole job; members it lacks come from the options\n"
	        "(\"key\": null means no key). Any other object is the data of one job of --type.\n"
	        "Each line gets a new id unless it has one.\n"
	        "\n"
	        "A bad line (not JSON, not an object, no type, data failing its schema) stops\n"
	        "the run with \"stdin:LINE: ...\": the jobs of the lines before it are delivered\n"
	        "and counted in the summary, nothing of that line or after it is produced.\n"
	        "\n"
	        "The summary \"enqueued N jobs to T\" goes to stderr. Exit status: 0 all\n"
	        "delivered, 1 a delivery failed (the reason is printed), 2 usage or bad input,\n"
	        "130 interrupted (what was already produced is delivered first).\n");
}

/* Delivery report: counts the outcome, prints the job with --verbose, and
 * frees the job_ref the message carried. Runs on the main thread, inside
 * rd_kafka_poll()/rd_kafka_flush(). */
static void
dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	struct enqueue *e = opaque;
	struct job_ref *ref = m->_private;
	const char *id = ref ? ref->text : "?", *type = ref ? ref->text + ref->type_off : "?";
	char reason[512];
	json_t *line;
	char *s;

	if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		if (e->failed++ == 0) {
			snprintf(e->first_failure, sizeof(e->first_failure),
			         "could not deliver job \"%s\" to topic \"%s\": %s", id, e->topic,
			         sl_ctl_delivery_error(rk, m, reason, sizeof(reason)));
		}
		goto out;
	}
	e->delivered++;
	if (!e->verbose)
		goto out;
	/* The key was checked to be UTF-8 before it was produced. */
	line = json_pack("{s:s, s:s, s:o, s:s, s:i, s:I}", "id", id, "type", type, "key",
	                 m->key ? json_stringn(m->key, m->key_len) : json_null(), "topic", e->topic,
	                 "partition", (int)m->partition, "offset", (json_int_t)m->offset);
	s = line ? json_dumps(line, JSON_COMPACT) : NULL;
	if (s != NULL)
		printf("%s\n", s);
	free(s);
	json_decref(line);
out:
	free(ref);
}

/* Builds the job's CloudEvent. `data` is borrowed. Returns a new malloc'ed
 * compact JSON string (length in *len), or NULL with the reason in errbuf. */
static char *
build_event(const char *id, const char *source, const char *type, const char *subject, json_t *data,
            size_t *len, char *errbuf, size_t errbuf_size)
{
	char now[32];
	json_t *ev;
	char *s = NULL;

	*len = 0;
	sl_event_now(now);
	/* Insertion order is output order: the attributes read top to bottom as
	 * the CloudEvents spec lists them, data last. The "o" of json_pack steals
	 * a reference, so data gets one of its own. */
	ev = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "specversion", "1.0", "id", id, "source", source,
	               "type", type, "time", now, "datacontenttype", "application/json");
	if (ev == NULL) {
		snprintf(errbuf, errbuf_size, "id, source and type must be valid UTF-8");
		return NULL;
	}
	if (subject != NULL && json_object_set_new(ev, "subject", json_string(subject)) != 0) {
		snprintf(errbuf, errbuf_size, "subject must be valid UTF-8");
		goto out;
	}
	if (json_object_set(ev, "data", data) != 0) {
		snprintf(errbuf, errbuf_size, "out of memory");
		goto out;
	}
	s = json_dumps(ev, JSON_COMPACT);
	if (s == NULL)
		snprintf(errbuf, errbuf_size, "out of memory");
	else
		*len = strlen(s);
out:
	json_decref(ev);
	return s;
}

/* Produces one job. Takes ownership of `value` (a malloc'ed event) on every
 * path. Waits, serving delivery reports, while the producer queue is full.
 * Returns 0, or -1 with the reason in errbuf. */
static int
produce_job(struct enqueue *e, const char *id, const char *type, const char *key, char *value,
            size_t len, char *errbuf, size_t errbuf_size)
{
	size_t id_len = strlen(id), type_len = strlen(type);
	struct job_ref *ref;
	rd_kafka_resp_err_t err;

	ref = malloc(sizeof(*ref) + id_len + type_len + 2);
	if (ref == NULL) {
		free(value);
		snprintf(errbuf, errbuf_size, "out of memory");
		return -1;
	}
	memcpy(ref->text, id, id_len + 1);
	ref->type_off = id_len + 1;
	memcpy(ref->text + ref->type_off, type, type_len + 1);
	for (;;) {
		/* F_FREE: librdkafka frees value once delivered, but only when
		 * producev succeeds; on failure it is still ours. */
		err = rd_kafka_producev(e->rk, RD_KAFKA_V_RKT(e->rkt), RD_KAFKA_V_PARTITION(e->partition),
		                        RD_KAFKA_V_KEY(key, key ? strlen(key) : 0), RD_KAFKA_V_VALUE(value, len),
		                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
		                        /* The CloudEvents Kafka binding's mark of structured mode. */
		                        RD_KAFKA_V_HEADER("content-type", "application/cloudevents+json", -1),
		                        RD_KAFKA_V_OPAQUE(ref), RD_KAFKA_V_END);
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
			break;
		/* Backpressure: wait for deliveries to make room. */
		rd_kafka_poll(e->rk, 100);
	}
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(errbuf, errbuf_size, "could not produce job \"%s\": %s", id, rd_kafka_err2str(err));
		free(ref);
		free(value);
		return -1;
	}
	/* value and ref now belong to librdkafka until the delivery report. */
	e->produced++;
	rd_kafka_poll(e->rk, 0);
	return 0;
}

/* Returns 1 when `obj` is a whole job ({"data": {...}, "type"?, "key"?, ...})
 * rather than the data of one. */
static int
is_job_object(json_t *obj)
{
	static const char *const members[] = { "data", "type", "key", "id", "source", "subject" };
	const char *name;
	json_t *v;
	size_t i;

	if (json_object_get(obj, "data") == NULL)
		return 0;
	json_object_foreach(obj, name, v) {
		for (i = 0; i < sizeof(members) / sizeof(members[0]); i++)
			if (strcmp(name, members[i]) == 0)
				break;
		if (i == sizeof(members) / sizeof(members[0]))
			return 0;
	}
	return 1;
}

/* Reads member `name` of a job object into *out when it is a non-empty
 * string; leaves *out alone when the member is absent. Returns 0, or -1 with
 * the reason in errbuf. */
static int
job_string(json_t *job, const char *name, const char **out, char *errbuf, size_t errbuf_size)
{
	json_t *v = json_object_get(job, name);

	if (v == NULL)
		return 0;
	if (!json_is_string(v) || json_string_length(v) == 0 ||
	    strlen(json_string_value(v)) != json_string_length(v)) {
		snprintf(errbuf, errbuf_size, "\"%s\" must be a non-empty string without NUL", name);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

/* Turns one input object (borrowed) into a produced job. Returns 0, -1 for
 * bad input (errbuf says why; nothing produced), -2 when producing failed. */
static int
enqueue_object(struct enqueue *e, json_t *obj, char *errbuf, size_t errbuf_size)
{
	const char *type = e->type, *key = e->key, *id = e->id, *source = e->source,
	           *subject = e->subject;
	char uuid[37], *value;
	json_t *data = obj, *k;
	size_t len;
	int r;

	if (!json_is_object(obj)) {
		snprintf(errbuf, errbuf_size, "expected a JSON object");
		return -1;
	}
	if (is_job_object(obj)) {
		data = json_object_get(obj, "data");
		if (!json_is_object(data)) {
			snprintf(errbuf, errbuf_size, "\"data\" must be an object");
			return -1;
		}
		if (job_string(obj, "type", &type, errbuf, errbuf_size) != 0 ||
		    job_string(obj, "id", &id, errbuf, errbuf_size) != 0 ||
		    job_string(obj, "source", &source, errbuf, errbuf_size) != 0 ||
		    job_string(obj, "subject", &subject, errbuf, errbuf_size) != 0)
			return -1;
		k = json_object_get(obj, "key");
		if (json_is_null(k)) {
			key = NULL;
		} else if (k != NULL) {
			if (!json_is_string(k) || strlen(json_string_value(k)) != json_string_length(k)) {
				snprintf(errbuf, errbuf_size, "\"key\" must be a string without NUL, or null");
				return -1;
			}
			key = json_string_value(k);
		}
	}
	if (type == NULL) {
		snprintf(errbuf, errbuf_size, "no job type: give --type, or a \"type\" member with \"data\"");
		return -1;
	}
	if (e->validate) {
		r = validate_data(&e->schemas, type, data, errbuf, errbuf_size);
		if (r != 0)
			return -1;
	}
	if (id == NULL) {
		sl_event_uuid(uuid);
		id = uuid;
	}
	value = build_event(id, source, type, subject, data, &len, errbuf, errbuf_size);
	if (value == NULL)
		return -1;
	return produce_job(e, id, type, key, value, len, errbuf, errbuf_size) == 0 ? 0 : -2;
}

/* Enqueues one job per line of stdin. Returns 0, -1 for a bad line (reported
 * here, with its number), -2 when producing failed or a delivery already
 * failed (reported by the caller), -3 when interrupted. */
static int
enqueue_stdin(struct enqueue *e)
{
	char *line = NULL, errbuf[1024];
	size_t cap = 0;
	ssize_t n;
	long lineno = 0;
	json_error_t jerr;
	json_t *obj;
	int rc = 0, r;

	for (;;) {
		/* Stop feeding the producer once a delivery has failed: the rest
		 * would most likely fail the same way, one timeout each. */
		if (e->failed > 0) {
			rc = -2;
			break;
		}
		errno = 0;
		n = getline(&line, &cap, stdin);
		/* SIGINT/SIGTERM: stop reading input, deliver what was produced. */
		if (sl_ctl_interrupted()) {
			rc = -3;
			break;
		}
		if (n < 0) {
			if (ferror(stdin)) {
				sl_ctl_error("could not read stdin: %s", strerror(errno));
				rc = -1;
			}
			break;
		}
		lineno++;
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (strspn(line, " \t") == (size_t)n)
			continue;
		obj = json_loadb(line, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
		if (obj == NULL) {
			sl_ctl_error("stdin:%ld: invalid JSON at column %d: %s", lineno, jerr.column, jerr.text);
			rc = -1;
			break;
		}
		r = enqueue_object(e, obj, errbuf, sizeof(errbuf));
		json_decref(obj);
		if (r == -1) {
			sl_ctl_error("stdin:%ld: %s", lineno, errbuf);
			rc = -1;
			break;
		}
		if (r == -2) {
			sl_ctl_error("stdin:%ld: %s", lineno, errbuf);
			rc = -2;
			break;
		}
	}
	free(line);
	return rc;
}

int
sl_ctl_enqueue(int argc, char **argv)
{
	static const struct option options[] = {
		{ "topic", required_argument, NULL, 't' },
		{ "type", required_argument, NULL, 'T' },
		{ "key", required_argument, NULL, 'k' },
		{ "source", required_argument, NULL, 's' },
		{ "id", required_argument, NULL, 'i' },
		{ "subject", required_argument, NULL, 'S' },
		{ "data", required_argument, NULL, 'd' },
		{ "brokers", required_argument, NULL, 'b' },
		{ "partition", required_argument, NULL, 'p' },
		{ "no-validate", no_argument, NULL, 'n' },
		{ "schema-dir", required_argument, NULL, 'D' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct enqueue e;
	json_error_t jerr;
	json_t *data = NULL, *probe;
	char errbuf[1024];
	long partition = -1;
	int opt, partitions, rc = 2, r = 0;

	memset(&e, 0, sizeof(e));
	e.topic = DEFAULT_TOPIC;
	e.source = DEFAULT_SOURCE;
	e.schemas.dir = DEFAULT_SCHEMA_DIR;
	e.validate = 1;
	sl_ctl_set_command("enqueue");
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":hv", options, NULL)) != -1) {
		switch (opt) {
		case 't': e.topic = optarg; break;
		case 'T': e.type = optarg; break;
		case 'k': e.key = optarg; break;
		case 's': e.source = optarg; break;
		case 'i': e.id = optarg; break;
		case 'S': e.subject = optarg; break;
		case 'd': e.data = optarg; break;
		case 'b': e.brokers = optarg; break;
		case 'n': e.validate = 0; break;
		case 'D': e.schemas.dir = optarg; break;
		case 'v': e.verbose = 1; break;
		case 'p':
			if (sl_ctl_parse_long(optarg, 0, INT32_MAX, &partition) != 0) {
				sl_ctl_error("--partition must be a partition number, not \"%s\"", optarg);
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
	e.partition = partition < 0 ? RD_KAFKA_PARTITION_UA : (int32_t)partition;
	e.brokers = sl_ctl_brokers(e.brokers);
	if (optind != argc)
		return sl_ctl_argument_error(argv[optind]);
	if (*e.topic == '\0' || *e.source == '\0' || (e.type && *e.type == '\0') ||
	    (e.id && *e.id == '\0')) {
		sl_ctl_error("--topic, --type, --source and --id must not be empty");
		return 2;
	}
	if (e.id != NULL && e.data == NULL) {
		sl_ctl_error("--id needs --data: every job read from stdin gets its own id");
		return 2;
	}
	/* Keys are printed as JSON strings and compared as text downstream. */
	if (e.key != NULL) {
		probe = json_string(e.key);
		if (probe == NULL) {
			sl_ctl_error("--key must be valid UTF-8");
			return 2;
		}
		json_decref(probe);
	}
	if (e.data != NULL) {
		if (e.type == NULL) {
			sl_ctl_error("--data needs --type");
			return 2;
		}
		data = json_loads(e.data, JSON_REJECT_DUPLICATES, &jerr);
		if (data == NULL) {
			sl_ctl_error("--data is not valid JSON: column %d: %s", jerr.column, jerr.text);
			return 2;
		}
		if (!json_is_object(data)) {
			sl_ctl_error("--data must be a JSON object");
			goto out;
		}
		/* Check it before connecting to anything. */
		if (e.validate && validate_data(&e.schemas, e.type, data, errbuf, sizeof(errbuf)) != 0) {
			sl_ctl_error("%s", errbuf);
			goto out;
		}
	}

	e.rk = sl_ctl_producer_new(e.brokers, dr_msg_cb, &e, errbuf, sizeof(errbuf));
	if (e.rk == NULL) {
		sl_ctl_error("could not create the kafka producer: %s", errbuf);
		goto out;
	}
	/* A missing topic (auto-creation is usually off) or unreachable brokers
	 * would otherwise show only after SL_CTL_MESSAGE_TIMEOUT_MS, once per job. */
	if (sl_ctl_topic_partitions(e.rk, e.topic, 10000, &partitions, errbuf, sizeof(errbuf)) != 0) {
		sl_ctl_error("%s (brokers \"%s\")", errbuf, e.brokers);
		goto out;
	}
	if (partition >= partitions) {
		sl_ctl_error("topic \"%s\" has no partition %ld (it has %d)", e.topic, partition, partitions);
		goto out;
	}
	e.rkt = rd_kafka_topic_new(e.rk, e.topic, NULL);
	if (e.rkt == NULL) {
		sl_ctl_error("could not use topic \"%s\": %s", e.topic,
		             rd_kafka_err2str(rd_kafka_last_error()));
		goto out;
	}

	/* Without SA_RESTART: a signal interrupts a getline() blocked on a terminal. */
	sl_ctl_catch_interrupts();

	if (data != NULL) {
		r = enqueue_object(&e, data, errbuf, sizeof(errbuf));
		if (r != 0)
			sl_ctl_error("%s", errbuf);
	} else {
		r = enqueue_stdin(&e);
	}
	/* Purged messages get their (failed) reports too, which free their job_refs. */
	sl_ctl_producer_flush(e.rk);
	fflush(stdout);

	fprintf(stderr, "enqueued %zu jobs to %s\n", e.delivered, e.topic);
	if (e.failed > 0) {
		if (e.failed > 1)
			sl_ctl_error("%s (and %zu more failed)", e.first_failure, e.failed - 1);
		else
			sl_ctl_error("%s", e.first_failure);
	}
	if (r == -3)
		sl_ctl_error("interrupted; the jobs counted above were delivered");
	if (r == -1)
		rc = 2;
	else if (r == -3)
		rc = 130;
	else if (r == -2 || e.failed > 0)
		rc = 1;
	else
		rc = 0;
out:
	json_decref(data);
	if (e.rkt != NULL)
		rd_kafka_topic_destroy(e.rkt);
	if (e.rk != NULL)
		rd_kafka_destroy(e.rk);
	schema_cache_clear(&e.schemas);
	return rc;
}
