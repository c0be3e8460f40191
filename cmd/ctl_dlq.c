/* ctl_dlq.c -- `sluicectl dlq list|replay`: inspect dead letters and send them back.
 *
 * Both read the dead-letter topic the same way: every partition from its low
 * to its high watermark as they were when the command started, then stop, so
 * a run sees a fixed snapshot even while workers keep writing. A dead letter
 * is the original message (key, value, headers) plus the worker's sluice-*
 * headers (common/worker.c, dead_letter_headers()); filters select by the
 * sluice-error-code header, by the job type read from the original value
 * when it is a JSON object with a string "type" (anything else has type ""),
 * and by the message timestamp.
 *
 * Replaying produces the original key, value and non-sluice headers back to
 * the source topic, on the source partition (so per-key order holds whatever
 * partitioner the original producer used), with acks=all and idempotence.
 * It is safe to repeat: the worker's ledger runs a job id at most once and
 * republishes the stored result of a finished one. Letters whose value was
 * omitted (too large for the dead-letter topic) are skipped with a warning:
 * their original is still in the source topic at the offset they name.
 *
 * Each replayed letter is recorded in the dead-letter topic itself, once
 * its copy is acknowledged: a marker on the letter's partition, with no key
 * and no value, whose sluice-replayed-offset header names the letter's
 * offset (and sluice-replayed-to where it went). Nothing else keeps state,
 * so every operator and host sees the same record, and it ages out with the
 * topic's retention. Markers are never letters: list and replay skip them,
 * and --pending hides the letters that have one (a first pass collects
 * them). A letter whose replay failed again comes back as a new letter.
 *
 * The reader assigns partitions and never commits: no consumer group is
 * joined or left behind. Not for: deleting dead letters (topic retention
 * does) or editing a letter before replaying it (use kcat).
 */
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "config.h"
#include "ctl.h"
#include "ctl_common.h"
#include "ctl_sources.h"
#include "text.h"

#define DEFAULT_DLQ_TOPIC  "jobs.dlq"
#define POLL_MS            200
/* How long the command waits for metadata and offsets, and for a partition
 * that has more to give but sends nothing: past that the brokers are gone;
 * say so rather than hang. */
#define METADATA_MS        30000
#define MESSAGE_WIDTH      60
/* The marker of a replayed letter (see the top of the file). */
#define REPLAYED_OFFSET    "sluice-replayed-offset"
#define REPLAYED_TO        "sluice-replayed-to"

/* The replayed letters, (partition, offset) of each, read from the markers. */
struct marks {
	struct mark {
		int32_t partition;
		int64_t offset;
	} *v;                      /* owned; read_letters() sorts them once collected */
	size_t n, cap;
};

struct filter {
	const char **codes;        /* borrowed from argv; n_codes == 0: any code */
	size_t n_codes;
	const char *type;          /* borrowed; NULL: any type */
	int64_t since_ms;          /* INT64_MIN: no lower bound */
	int64_t until_ms;          /* INT64_MAX: no upper bound */
	long limit;                /* -1: no limit */
	const struct marks *replayed; /* borrowed; not NULL: only letters without a marker (--pending) */
	const char *id;            /* borrowed; NULL: any; else the value's "id" (console) */
	const char *subject;       /* borrowed; NULL: any; else the value's "subject" (console) */
	const char *key;           /* borrowed; NULL: any; else the message key (console) */
	int32_t partition;         /* -1: any; else with offset, one letter (console) */
	int64_t offset;
};

/* A filter that selects every letter. */
#define FILTER_ALL { NULL, 0, NULL, INT64_MIN, INT64_MAX, -1, NULL, NULL, NULL, NULL, -1, -1 }

/* A header value: bytes borrowed from the message, not NUL-terminated. */
struct hval {
	const char *p;             /* NULL when the header is absent */
	size_t len;
};

/* One dead letter as the filters and printers see it. Everything is borrowed
 * from the message except `value`, which the letter owns (letter_clear()). */
struct letter {
	const rd_kafka_message_t *m;
	int64_t ts_ms;             /* -1 when the message has none */
	struct hval code, message, topic, partition, offset, attempts, omitted;
	char source_topic[256];    /* NUL-terminated copy of `topic`; "" when absent */
	int32_t source_partition;  /* -1 when absent or not a number */
	int64_t source_offset;     /* -1 when absent or not a number */
	json_t *value;             /* new reference: the decoded value, or NULL */
	const char *type;          /* borrowed from value; "" when undecodable */
	const char *id;            /* borrowed from value; NULL when absent */
};

/* Called for each selected letter; returns 0 to go on, -1 to stop the read
 * (after reporting why). */
typedef int (*letter_fn)(const struct letter *l, void *arg);

static void
header(rd_kafka_headers_t *hdrs, const char *name, struct hval *out)
{
	const void *p;
	size_t len;

	out->p = NULL;
	out->len = 0;
	if (hdrs != NULL && rd_kafka_header_get_last(hdrs, name, &p, &len) == RD_KAFKA_RESP_ERR_NO_ERROR) {
		/* A header present with a NULL value reads as present and empty. */
		out->p = p ? p : "";
		out->len = p ? len : 0;
	}
}

/* Parses a header holding a decimal number; -1 when absent or not one. */
static int64_t
header_number(const struct hval *h)
{
	char buf[32];
	long v;

	if (h->p == NULL || h->len == 0 || h->len >= sizeof(buf))
		return -1;
	memcpy(buf, h->p, h->len);
	buf[h->len] = '\0';
	if (sl_ctl_parse_long(buf, 0, LONG_MAX, &v) != 0)
		return -1;
	return v;
}

/* Fills *l (OUT) from message m (borrowed; must outlive l); release it with
 * letter_clear(). A value that does not decode (or memory that runs out while
 * decoding it) gives a letter without type and id. This function can't fail. */
static void
letter_init(struct letter *l, const rd_kafka_message_t *m)
{
	rd_kafka_headers_t *hdrs = NULL;
	rd_kafka_timestamp_type_t tstype;
	int64_t n;
	json_t *v;

	memset(l, 0, sizeof(*l));
	l->m = m;
	l->ts_ms = rd_kafka_message_timestamp(m, &tstype);
	if (tstype == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE)
		l->ts_ms = -1;
	/* Borrowed from m; a message without headers leaves hdrs NULL. */
	if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
		hdrs = NULL;
	header(hdrs, "sluice-error-code", &l->code);
	header(hdrs, "sluice-error-message", &l->message);
	header(hdrs, "sluice-source-topic", &l->topic);
	header(hdrs, "sluice-source-partition", &l->partition);
	header(hdrs, "sluice-source-offset", &l->offset);
	header(hdrs, "sluice-attempts", &l->attempts);
	header(hdrs, "sluice-value-omitted", &l->omitted);
	if (l->topic.p != NULL && l->topic.len < sizeof(l->source_topic) &&
	    memchr(l->topic.p, '\0', l->topic.len) == NULL) {
		memcpy(l->source_topic, l->topic.p, l->topic.len);
		l->source_topic[l->topic.len] = '\0';
	}
	n = header_number(&l->partition);
	l->source_partition = n > INT32_MAX ? -1 : (int32_t)n;
	l->source_offset = header_number(&l->offset);
	l->type = "";
	if (m->payload == NULL || m->len == 0)
		return;
	v = json_loadb(m->payload, m->len, 0, NULL);
	if (!json_is_object(v)) {
		json_decref(v);
		return;
	}
	l->value = v;
	if (json_is_string(json_object_get(v, "type")))
		l->type = json_string_value(json_object_get(v, "type"));
	if (json_is_string(json_object_get(v, "id")))
		l->id = json_string_value(json_object_get(v, "id"));
}

static void
letter_clear(struct letter *l)
{
	json_decref(l->value);
	l->value = NULL;
}

static int
hval_equals(const struct hval *h, const char *s)
{
	return h->p != NULL && h->len == strlen(s) && memcmp(h->p, s, h->len) == 0;
}

static int
mark_cmp(const void *a, const void *b)
{
	const struct mark *x = a, *y = b;

	if (x->partition != y->partition)
		return x->partition < y->partition ? -1 : 1;
	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Adds (partition, offset) to ms. Returns 0, or -1 when out of memory. */
static int
marks_add(struct marks *ms, int32_t partition, int64_t offset)
{
	struct mark *v;

	if (ms->n == ms->cap) {
		v = realloc(ms->v, (ms->cap ? ms->cap * 2 : 64) * sizeof(*v));
		if (v == NULL)
			return -1;
		ms->v = v;
		ms->cap = ms->cap ? ms->cap * 2 : 64;
	}
	ms->v[ms->n].partition = partition;
	ms->v[ms->n].offset = offset;
	ms->n++;
	return 0;
}

static int
marks_has(const struct marks *ms, int32_t partition, int64_t offset)
{
	struct mark key = { partition, offset };

	return ms->n > 0 && bsearch(&key, ms->v, ms->n, sizeof(key), mark_cmp) != NULL;
}

/* Returns 1 when l passes every filter. */
static int
selected(const struct filter *f, const struct letter *l)
{
	size_t i;

	if (f->replayed != NULL && marks_has(f->replayed, l->m->partition, l->m->offset))
		return 0;

	if (f->n_codes > 0) {
		for (i = 0; i < f->n_codes; i++)
			if (hval_equals(&l->code, f->codes[i]))
				break;
		if (i == f->n_codes)
			return 0;
	}
	if (f->type != NULL && strcmp(f->type, l->type) != 0)
		return 0;
	if (f->partition >= 0 && (l->m->partition != f->partition || l->m->offset != f->offset))
		return 0;
	if (f->id != NULL && (l->id == NULL || strcmp(f->id, l->id) != 0))
		return 0;
	if (f->subject != NULL && (l->value == NULL || !json_is_string(json_object_get(l->value, "subject")) ||
	                           strcmp(f->subject, json_string_value(json_object_get(l->value, "subject"))) != 0))
		return 0;
	if (f->key != NULL && (l->m->key == NULL || l->m->key_len != strlen(f->key) ||
	                       memcmp(l->m->key, f->key, l->m->key_len) != 0))
		return 0;
	/* A letter without a timestamp matches no time bound. */
	if ((f->since_ms != INT64_MIN || f->until_ms != INT64_MAX) &&
	    (l->ts_ms < 0 || l->ts_ms < f->since_ms || l->ts_ms > f->until_ms))
		return 0;
	return 1;
}

/* Reads `topic` from its low to its high watermarks as they are now and calls
 * fn for each letter that passes f, up to f->limit. Markers of replayed
 * letters are not letters: they are added to `marks` when it is not NULL,
 * and otherwise skipped. Metadata and offset requests wait up to
 * timeout_ms, and so does a partition that has more to give but sends
 * nothing; deadline_ms (0: none) bounds the whole read (sl_ctl_now_ms()
 * time). Sets *n_read and *n_selected (OUT). Returns 0 (also when
 * interrupted), or -1 with the reason in errbuf. Any thread: everything it
 * touches is its own. */
static int
read_letters(const char *brokers, const char *topic, const struct filter *f, letter_fn fn, void *arg,
             struct marks *marks, long *n_read, long *n_selected, int timeout_ms, int64_t deadline_ms,
             char *errbuf, size_t errbuf_size)
{
	rd_kafka_headers_t *hdrs;
	struct hval replayed;
	int64_t replayed_offset;
	rd_kafka_topic_partition_list_t *parts = NULL;
	rd_kafka_message_t *m = NULL;
	rd_kafka_resp_err_t err;
	rd_kafka_t *rk = NULL;
	struct letter l;
	int64_t *ends = NULL, lo, hi, last = 0, now;
	char *done = NULL, why[512];
	int partitions, i, remaining = 0, rc = -1;

	*n_read = 0;
	*n_selected = 0;
	memset(&l, 0, sizeof(l));
	rk = sl_ctl_reader_new(brokers, "dlq", SL_CTL_READER_EOF | SL_CTL_READER_EARLIEST, why, sizeof(why));
	if (rk == NULL) {
		snprintf(errbuf, errbuf_size, "could not create the kafka consumer: %s", why);
		goto out;
	}
	if (sl_ctl_topic_partitions(rk, topic, timeout_ms, &partitions, why, sizeof(why)) != 0) {
		snprintf(errbuf, errbuf_size, "%s (brokers \"%s\")", why, brokers);
		goto out;
	}
	ends = calloc((size_t)partitions, sizeof(*ends));
	done = calloc((size_t)partitions, 1);
	parts = rd_kafka_topic_partition_list_new(partitions);
	if (ends == NULL || done == NULL) {
		snprintf(errbuf, errbuf_size, "out of memory");
		goto out;
	}
	for (i = 0; i < partitions; i++) {
		err = rd_kafka_query_watermark_offsets(rk, topic, i, &lo, &hi, timeout_ms);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			snprintf(errbuf, errbuf_size, "could not read the offsets of \"%s\" [%d]: %s", topic, i,
			         rd_kafka_err2str(err));
			goto out;
		}
		ends[i] = hi;
		if (hi <= lo) {
			done[i] = 1;
			continue;
		}
		rd_kafka_topic_partition_list_add(parts, topic, i)->offset = lo;
		remaining++;
	}
	if (remaining == 0) {
		rc = 0;
		goto out;
	}
	err = rd_kafka_assign(rk, parts);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(errbuf, errbuf_size, "could not assign the partitions of \"%s\": %s", topic,
		         rd_kafka_err2str(err));
		goto out;
	}
	last = sl_ctl_now_ms();
	/* SIGINT/SIGTERM stops the read; a replay still waits for what it produced. */
	while (remaining > 0 && !sl_ctl_interrupted() && (f->limit < 0 || *n_selected < f->limit)) {
		m = rd_kafka_consumer_poll(rk, POLL_MS);
		now = sl_ctl_now_ms();
		if (deadline_ms > 0 && now > deadline_ms) {
			snprintf(errbuf, errbuf_size, "reading \"%s\" took too long: %d partition%s still to read "
			         "(brokers \"%s\")", topic, remaining, remaining == 1 ? "" : "s", brokers);
			goto out;
		}
		if (m == NULL) {
			if (now - last > timeout_ms) {
				snprintf(errbuf, errbuf_size, "no message from \"%s\" for %d s with %d partition%s still "
				         "to read (brokers \"%s\")", topic, timeout_ms / 1000, remaining,
				         remaining == 1 ? "" : "s", brokers);
				goto out;
			}
			continue;
		}
		last = now;
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			/* The end, also when the last offsets are transaction markers. */
			if (m->partition >= 0 && m->partition < partitions && !done[m->partition]) {
				done[m->partition] = 1;
				remaining--;
			}
		} else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			if (sl_ctl_consumer_error(m) != 0) {
				snprintf(errbuf, errbuf_size, "kafka: %s", rd_kafka_message_errstr(m));
				goto out;
			}
		} else if (m->partition >= 0 && m->partition < partitions && !done[m->partition] &&
		           m->offset < ends[m->partition]) {
			/* Messages past the starting high watermark came in while
			 * we read: not part of this run's snapshot. */
			if (m->offset >= ends[m->partition] - 1) {
				done[m->partition] = 1;
				remaining--;
			}
			if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
				hdrs = NULL;
			header(hdrs, REPLAYED_OFFSET, &replayed);
			if (replayed.p != NULL) {
				replayed_offset = header_number(&replayed);
				if (marks != NULL && replayed_offset >= 0 &&
				    marks_add(marks, m->partition, replayed_offset) != 0) {
					snprintf(errbuf, errbuf_size, "out of memory");
					goto out;
				}
				goto next;
			}
			if (fn == NULL)
				goto next;
			(*n_read)++;
			letter_init(&l, m);
			if (selected(f, &l)) {
				(*n_selected)++;
				if (fn(&l, arg) != 0) {
					/* fn fails only when memory runs out. */
					snprintf(errbuf, errbuf_size, "out of memory");
					letter_clear(&l);
					goto out;
				}
			}
			letter_clear(&l);
		}
next:
		rd_kafka_message_destroy(m);
		m = NULL;
	}
	/* No marks leaves v NULL, which qsort() must not be given even for
	 * zero elements (its pointer is declared nonnull). */
	if (marks != NULL && marks->n > 0)
		qsort(marks->v, marks->n, sizeof(*marks->v), mark_cmp);
	rc = 0;
out:
	if (m != NULL)
		rd_kafka_message_destroy(m);
	if (parts != NULL)
		rd_kafka_topic_partition_list_destroy(parts);
	sl_ctl_consumer_destroy(rk);
	free(ends);
	free(done);
	return rc;
}

/* ---- list ---------------------------------------------------------------- */

struct list {
	int json;
	int header_done;
};

/* Copies bytes into buf for a table cell through sl_text_escape_untrusted()
 * (control characters and invalid UTF-8 as \xNN); past `width` bytes the
 * text is cut between characters and ends with "...". NULL or empty gives
 * "-". Returns buf. */
static const char *
cell(const char *p, size_t len, size_t width, char *buf, size_t buf_size)
{
	if (p == NULL || len == 0) {
		snprintf(buf, buf_size, "-");
		return buf;
	}
	if (width + 4 > buf_size)
		width = buf_size - 4;
	if (sl_text_escape_untrusted(p, len, buf, width + 1) < len)
		strcat(buf, "...");
	return buf;
}

/* Builds the JSON line of a letter: a new reference, or NULL when out of memory. */
static json_t *
letter_json(const struct letter *l)
{
	const rd_kafka_message_t *m = l->m;
	char ts[40];
	json_t *o;
	int r = 0;

	o = json_object();
	if (o == NULL)
		return NULL;
	r |= json_object_set_new(o, "partition", json_integer(m->partition));
	r |= json_object_set_new(o, "offset", json_integer(m->offset));
	r |= json_object_set_new(o, "timestamp", l->ts_ms < 0 ? json_null()
	                                                      : json_string(sl_ctl_format_ms(l->ts_ms, ts, sizeof(ts))));
	r |= sl_ctl_json_set_bytes(o, "code", "code_base64", l->code.p, l->code.len);
	r |= sl_ctl_json_set_bytes(o, "message", "message_base64", l->message.p, l->message.len);
	r |= json_object_set_new(o, "type", json_string(l->type));
	r |= json_object_set_new(o, "id", l->id ? json_string(l->id) : json_null());
	r |= sl_ctl_json_set_bytes(o, "key", "key_base64", m->key, m->key_len);
	r |= sl_ctl_json_set_bytes(o, "source_topic", "source_topic_base64", l->topic.p, l->topic.len);
	r |= json_object_set_new(o, "source_partition",
	                         l->source_partition < 0 ? json_null() : json_integer(l->source_partition));
	r |= json_object_set_new(o, "source_offset",
	                         l->source_offset < 0 ? json_null() : json_integer(l->source_offset));
	r |= json_object_set_new(o, "attempts",
	                         header_number(&l->attempts) < 0 ? json_null()
	                                                         : json_integer(header_number(&l->attempts)));
	r |= json_object_set_new(o, "value_omitted", json_boolean(l->omitted.p != NULL));
	if (r != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static int
list_one(const struct letter *l, void *arg)
{
	struct list *ls = arg;
	char where[48], ts[40], code[32], type[32], id[40], msg[MESSAGE_WIDTH + 8];
	json_t *o;
	char *s;

	if (ls->json) {
		o = letter_json(l);
		s = o ? json_dumps(o, JSON_COMPACT) : NULL;
		json_decref(o);
		if (s == NULL) {
			sl_ctl_error("out of memory");
			return -1;
		}
		puts(s);
		free(s);
		return 0;
	}
	if (!ls->header_done) {
		printf("%-14s %-24s %-24s %-20s %-36s %s\n", "PARTITION/OFF", "TIME", "CODE", "TYPE", "ID",
		       "MESSAGE");
		ls->header_done = 1;
	}
	snprintf(where, sizeof(where), "%d/%" PRId64, (int)l->m->partition, l->m->offset);
	printf("%-14s %-24s %-24s %-20s %-36s %s\n", where, sl_ctl_format_ms(l->ts_ms, ts, sizeof(ts)),
	       cell(l->code.p, l->code.len, 24, code, sizeof(code)),
	       cell(l->type, strlen(l->type), 20, type, sizeof(type)),
	       cell(l->id, l->id ? strlen(l->id) : 0, 36, id, sizeof(id)),
	       cell(l->message.p, l->message.len, MESSAGE_WIDTH, msg, sizeof(msg)));
	return 0;
}

/* ---- replay -------------------------------------------------------------- */

struct target {
	char *topic;               /* owned */
	int partitions;            /* -1: the topic could not be used */
	long produced, delivered, failed;
};

struct replay {
	rd_kafka_t *rk;            /* the producer */
	const char *dlq;           /* the dead-letter topic, borrowed: where markers go */
	const char *to;            /* --to, borrowed; NULL: each letter's source topic */
	int dry_run;
	struct target *t;          /* owned, n_t of them */
	size_t n_t;
	long skipped;
	long unmarked;             /* replays delivered whose marker was not */
	char first_failure[512];
};

/* What a replayed copy's delivery report needs: where its letter is. Owned
 * by the message (its opaque) and freed by the report. */
struct sent {
	size_t idx;                /* the target */
	int32_t partition;         /* the letter's, in the dead-letter topic */
	int64_t offset;
};

/* The opaque of every marker. */
static char marker_tag;

/* Records a delivered replay: appends the marker of the letter at
 * (partition, offset) to the dead-letter topic. Returns 0, or -1 when it
 * could not be queued. */
static int
mark_replayed(struct replay *r, int32_t partition, int64_t offset, const char *to)
{
	rd_kafka_headers_t *hdrs = rd_kafka_headers_new(2);
	rd_kafka_resp_err_t err;
	char off[32];

	snprintf(off, sizeof(off), "%" PRId64, offset);
	rd_kafka_header_add(hdrs, REPLAYED_OFFSET, -1, off, -1);
	rd_kafka_header_add(hdrs, REPLAYED_TO, -1, to, -1);
	err = rd_kafka_producev(r->rk, RD_KAFKA_V_TOPIC(r->dlq), RD_KAFKA_V_PARTITION(partition),
	                        RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(&marker_tag), RD_KAFKA_V_END);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		rd_kafka_headers_destroy(hdrs); /* not taken over on failure */
		return -1;
	}
	return 0; /* hdrs is now owned by the message */
}

/* Delivery report of a replayed copy (opaque: a struct sent) or a marker.
 * A delivered copy queues its letter's marker. Runs on the main thread
 * inside rd_kafka_poll()/rd_kafka_flush(). */
static void
dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	struct replay *r = opaque;
	struct sent *sent;
	size_t idx;
	char reason[256];

	if (m->_private == &marker_tag) {
		if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR)
			r->unmarked++;
		return;
	}
	sent = m->_private;
	idx = sent->idx;
	if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		r->t[idx].delivered++;
		if (!r->dry_run && mark_replayed(r, sent->partition, sent->offset, r->t[idx].topic) != 0)
			r->unmarked++;
		free(sent);
		return;
	}
	free(sent);
	r->t[idx].failed++;
	if (r->first_failure[0] == '\0') {
		snprintf(r->first_failure, sizeof(r->first_failure), "could not deliver to \"%s\": %s",
		         r->t[idx].topic, sl_ctl_delivery_error(rk, m, reason, sizeof(reason)));
	}
}

/* Returns the index of topic's target, adding it (and looking the topic up)
 * when new; (size_t)-1 when out of memory. */
static size_t
target_of(struct replay *r, const char *topic)
{
	char shown[270];
	struct target *t;
	char errbuf[512];
	size_t i;

	for (i = 0; i < r->n_t; i++)
		if (strcmp(r->t[i].topic, topic) == 0)
			return i;
	t = realloc(r->t, (r->n_t + 1) * sizeof(*t));
	if (t == NULL)
		return (size_t)-1;
	r->t = t;
	t = &r->t[r->n_t];
	memset(t, 0, sizeof(*t));
	t->topic = strdup(topic);
	if (t->topic == NULL)
		return (size_t)-1;
	if (sl_ctl_topic_partitions(r->rk, topic, METADATA_MS, &t->partitions, errbuf, sizeof(errbuf)) != 0) {
		sl_ctl_error("cannot replay to \"%s\": %s", cell(topic, strlen(topic), 256, shown, sizeof(shown)),
		             errbuf);
		t->partitions = -1;
	}
	return r->n_t++;
}

/* Returns new headers: those of m (borrowed) without any sluice-* header. */
static rd_kafka_headers_t *
clean_headers(const rd_kafka_message_t *m)
{
	rd_kafka_headers_t *orig = NULL, *h;
	const char *name;
	const void *val;
	size_t i, size;

	if (rd_kafka_message_headers(m, &orig) != RD_KAFKA_RESP_ERR_NO_ERROR)
		orig = NULL;
	h = rd_kafka_headers_new(orig ? rd_kafka_header_cnt(orig) : 0);
	for (i = 0; orig != NULL && rd_kafka_header_get_all(orig, i, &name, &val, &size) ==
	                                    RD_KAFKA_RESP_ERR_NO_ERROR; i++)
		if (strncmp(name, "sluice-", 7) != 0)
			rd_kafka_header_add(h, name, -1, val, val ? (ssize_t)size : 0);
	return h;
}

static int
replay_one(const struct letter *l, void *arg)
{
	struct replay *r = arg;
	const rd_kafka_message_t *m = l->m;
	rd_kafka_headers_t *hdrs;
	rd_kafka_resp_err_t err;
	const char *topic = r->to ? r->to : l->source_topic;
	struct target *t;
	struct sent *sent;
	int32_t partition = RD_KAFKA_PARTITION_UA;
	char type[140], id[140], where[270];
	size_t idx;

	if (l->omitted.p != NULL) {
		sl_ctl_error("skipping the dead letter at partition %d offset %" PRId64 ": its value was omitted "
		             "(%s); the original is in \"%s\" [%d] at offset %" PRId64,
		             (int)m->partition, m->offset, cell(l->omitted.p, l->omitted.len, 128, id, sizeof(id)),
		             cell(l->source_topic, strlen(l->source_topic), 256, where, sizeof(where)),
		             (int)l->source_partition, l->source_offset);
		r->skipped++;
		return 0;
	}
	if (*topic == '\0') {
		sl_ctl_error("skipping the dead letter at partition %d offset %" PRId64 ": it has no "
		             "sluice-source-topic header (use --to)", (int)m->partition, m->offset);
		r->skipped++;
		return 0;
	}
	idx = target_of(r, topic);
	if (idx == (size_t)-1) {
		sl_ctl_error("out of memory");
		return -1;
	}
	t = &r->t[idx];
	if (t->partitions < 0) {
		t->failed++;
		return 0;
	}
	/* Back to the partition it came from: the worker orders jobs per
	 * partition, and the original producer's partitioner is unknown. */
	if (r->to == NULL && l->source_partition >= 0 && l->source_partition < t->partitions)
		partition = l->source_partition;
	if (r->dry_run) {
		/* Type, id and topic come from the letter: shown escaped. */
		printf("would replay %d/%" PRId64 " (type %s, id %s) to \"%s\" ", (int)m->partition, m->offset,
		       cell(l->type, strlen(l->type), 128, type, sizeof(type)),
		       cell(l->id, l->id ? strlen(l->id) : 0, 128, id, sizeof(id)),
		       cell(topic, strlen(topic), 256, where, sizeof(where)));
		if (partition == RD_KAFKA_PARTITION_UA)
			printf("by key\n");
		else
			printf("[%d]\n", (int)partition);
		t->produced++;
		return 0;
	}
	if ((sent = malloc(sizeof(*sent))) == NULL) {
		sl_ctl_error("out of memory");
		return -1;
	}
	sent->idx = idx;
	sent->partition = m->partition;
	sent->offset = m->offset;
	hdrs = clean_headers(m);
	for (;;) {
		err = rd_kafka_producev(r->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
		                        RD_KAFKA_V_KEY(m->key, m->key_len), RD_KAFKA_V_VALUE(m->payload, m->len),
		                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
		                        RD_KAFKA_V_OPAQUE(sent), RD_KAFKA_V_END);
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
			break;
		rd_kafka_poll(r->rk, 50);
	}
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		free(sent);
		rd_kafka_headers_destroy(hdrs); /* not taken over on failure */
		sl_ctl_error("could not replay the dead letter at partition %d offset %" PRId64 " to \"%s\": %s",
		             (int)m->partition, m->offset, topic, rd_kafka_err2str(err));
		t->failed++;
		return 0;
	}
	/* hdrs and sent are now owned by the message. */
	t->produced++;
	rd_kafka_poll(r->rk, 0);
	return 0;
}

/* ---- the command --------------------------------------------------------- */

static void
usage(FILE *out)
{
	fprintf(out,
	        "usage: sluicectl dlq list   [-c FILE] [FILTERS] [--json] [--topic T] [--brokers B]\n"
	        "       sluicectl dlq replay [-c FILE] [FILTERS] [--dry-run] [--to TOPIC] [--topic T]\n"
	        "                            [--brokers B]\n"
	        "\n"
	        "Reads the dead-letter topic from its start to its end as they are when the\n"
	        "command starts. `list` prints the selected dead letters; `replay` sends\n"
	        "each back to its source topic and partition with its original key, value\n"
	        "and headers (sluice-* headers removed), with acks=all. Replaying twice is\n"
	        "safe: the worker's ledger runs each job id at most once.\n"
	        "\n"
	        "Each letter whose copy was delivered is marked as replayed in the dead-letter\n"
	        "topic itself: a record with no key or value and a sluice-replayed-offset\n"
	        "header on the letter's partition. sluicectl keeps no other state, so every\n"
	        "host sees the same marks; they age out with the topic's retention.\n"
	        "\n"
	        "Filters (all must match):\n"
	        "  --code CODE      sluice-error-code is CODE; repeat for any of several\n"
	        "  --type TYPE      the job's CloudEvents type (\"\" selects values that\n"
	        "                   are not JSON objects with a type)\n"
	        "  --since WHEN     message time at or after WHEN: RFC 3339\n"
	        "                   (2024-05-01T12:00:00Z) or a duration ago (90s, 15m, 2h, 7d)\n"
	        "  --until WHEN     message time at or before WHEN\n"
	        "  --limit N        at most N dead letters\n"
	        "  --pending        only letters not marked as replayed (a letter whose\n"
	        "                   replay failed again is a new, pending letter)\n"
	        "\n"
	        "  -c, --config FILE\n"
	        "                   the worker's configuration: its dlq_topic, brokers and\n"
	        "                   Kafka properties are the defaults of --topic and --brokers\n"
	        "  --topic T        dead-letter topic (default: the configuration's, else\n"
	        "                   \"" DEFAULT_DLQ_TOPIC "\")\n"
	        "  --brokers B      Kafka brokers (default: the configuration's, else\n"
	        "                   $SLUICE_KAFKA_BROKERS, else " SL_CTL_DEFAULT_BROKERS ")\n"
	        "  --json           list: one JSON object per line\n"
	        "  --dry-run        replay: print what would be replayed, produce nothing\n"
	        "  --to TOPIC       replay: to TOPIC (partitioned by key) instead of each\n"
	        "                   letter's source topic and partition\n"
	        "\n"
	        "Letters whose value was omitted (sluice-value-omitted) are not replayed:\n"
	        "their original is still in the source topic, at the offset they name.\n"
	        "Exit status: 0, 1 when a replayed letter was not delivered, 2 usage or\n"
	        "connection error.\n");
}

int
sl_ctl_dlq(int argc, char **argv)
{
	static const struct option options[] = {
		{ "topic", required_argument, NULL, 't' },
		{ "brokers", required_argument, NULL, 'b' },
		{ "config", required_argument, NULL, 'c' },
		{ "code", required_argument, NULL, 'C' },
		{ "pending", no_argument, NULL, 'p' },
		{ "type", required_argument, NULL, 'T' },
		{ "since", required_argument, NULL, 's' },
		{ "until", required_argument, NULL, 'u' },
		{ "limit", required_argument, NULL, 'l' },
		{ "json", no_argument, NULL, 'j' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "to", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct filter f = FILTER_ALL;
	struct filter all = FILTER_ALL;
	struct marks replayed = { NULL, 0, 0 };
	struct replay r;
	struct list ls = { 0, 0 };
	struct sl_config *cfg = NULL;
	const char *topic = NULL, *brokers = NULL, *config_path = NULL, *action;
	char errbuf[1024], shown[270];
	long n_read = 0, n_selected = 0, produced = 0, delivered = 0, failed = 0;
	int opt, is_replay, read_failed, pending = 0, rc = 2;
	size_t i;

	memset(&r, 0, sizeof(r));
	sl_ctl_set_command("dlq");
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	action = argv[1];
	if (strcmp(action, "list") != 0 && strcmp(action, "replay") != 0) {
		sl_ctl_error("unknown action \"%s\": expected list or replay", action);
		return 2;
	}
	is_replay = action[0] == 'r';
	sl_ctl_set_command(is_replay ? "dlq replay" : "dlq list");
	f.codes = calloc((size_t)argc, sizeof(*f.codes));
	if (f.codes == NULL) {
		sl_ctl_error("out of memory");
		return 2;
	}
	/* Options start after the action. */
	argc--;
	argv++;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":hc:", options, NULL)) != -1) {
		switch (opt) {
		case 't': topic = optarg; break;
		case 'b': brokers = optarg; break;
		case 'c': config_path = optarg; break;
		case 'C': f.codes[f.n_codes++] = optarg; break;
		case 'p': pending = 1; break;
		case 'T': f.type = optarg; break;
		case 'j': ls.json = 1; break;
		case 'n': r.dry_run = 1; break;
		case 'o': r.to = optarg; break;
		case 's':
		case 'u':
			if (sl_ctl_parse_time(optarg, opt == 's' ? &f.since_ms : &f.until_ms) != 0) {
				sl_ctl_error("--%s must be an RFC 3339 time or a duration (90s, 15m, 2h, 7d), not \"%s\"",
				             opt == 's' ? "since" : "until", optarg);
				goto out;
			}
			break;
		case 'l':
			if (sl_ctl_parse_long(optarg, 1, LONG_MAX, &f.limit) != 0) {
				sl_ctl_error("--limit must be a positive number, not \"%s\"", optarg);
				goto out;
			}
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
		sl_ctl_error("unexpected argument \"%s\" (see 'sluicectl dlq --help')", argv[optind]);
		goto out;
	}
	if (!is_replay && (r.dry_run || r.to != NULL)) {
		sl_ctl_error("--dry-run and --to are options of 'dlq replay'");
		goto out;
	}
	if (is_replay && ls.json) {
		sl_ctl_error("--json is an option of 'dlq list'");
		goto out;
	}
	if (config_path != NULL && (cfg = sl_ctl_config_load(config_path)) == NULL)
		goto out;
	if (topic == NULL)
		topic = cfg != NULL ? cfg->dlq_topic : DEFAULT_DLQ_TOPIC;
	if (*topic == '\0' || (r.to != NULL && *r.to == '\0')) {
		sl_ctl_error("--topic and --to must not be empty");
		goto out;
	}
	brokers = sl_ctl_brokers(brokers);

	sl_ctl_catch_interrupts();

	/* --pending: a first pass collects the marks of replayed letters. */
	if (pending) {
		if (read_letters(brokers, topic, &all, NULL, NULL, &replayed, &n_read, &n_selected, METADATA_MS, 0,
		                 errbuf, sizeof(errbuf)) != 0) {
			sl_ctl_error("%s", errbuf);
			goto out;
		}
		f.replayed = &replayed;
	}
	if (!is_replay) {
		if (read_letters(brokers, topic, &f, list_one, &ls, NULL, &n_read, &n_selected, METADATA_MS, 0,
		                 errbuf, sizeof(errbuf)) != 0) {
			sl_ctl_error("%s", errbuf);
			goto out;
		}
		fflush(stdout);
		fprintf(stderr, "%ld of %ld dead letters in \"%s\" selected%s\n", n_selected, n_read, topic,
		        sl_ctl_interrupted() ? " (interrupted)" : "");
		rc = sl_ctl_interrupted() ? 130 : 0;
		goto out;
	}

	/* With --to, keys are partitioned as Java (and sluicectl enqueue) do. */
	r.rk = sl_ctl_producer_new(brokers, dr_msg_cb, &r, errbuf, sizeof(errbuf));
	if (r.rk == NULL) {
		sl_ctl_error("could not create the kafka producer: %s", errbuf);
		goto out;
	}
	/* After a read error, what was produced is still delivered and counted. */
	r.dlq = topic;
	read_failed = read_letters(brokers, topic, &f, replay_one, &r, NULL, &n_read, &n_selected, METADATA_MS, 0,
	                           errbuf, sizeof(errbuf)) != 0;
	if (read_failed)
		sl_ctl_error("%s", errbuf);
	sl_ctl_producer_flush(r.rk);
	for (i = 0; i < r.n_t; i++) {
		const char *to = cell(r.t[i].topic, strlen(r.t[i].topic), 256, shown, sizeof(shown));

		if (r.dry_run)
			printf("would replay %ld to \"%s\"\n", r.t[i].produced, to);
		else if (r.t[i].failed == 0)
			printf("replayed %ld to \"%s\"\n", r.t[i].delivered, to);
		else
			printf("replayed %ld to \"%s\" (%ld failed)\n", r.t[i].delivered, to, r.t[i].failed);
		produced += r.t[i].produced;
		delivered += r.t[i].delivered;
		failed += r.t[i].failed;
	}
	if (r.first_failure[0] != '\0')
		sl_ctl_error("%s", r.first_failure);
	if (r.unmarked > 0)
		sl_ctl_error("could not mark %ld replayed letter%s in \"%s\": --pending still lists them",
		             r.unmarked, r.unmarked == 1 ? "" : "s", cell(topic, strlen(topic), 256, shown, sizeof(shown)));
	if (r.dry_run)
		printf("%ld would be replayed, %ld skipped (%ld of %ld dead letters selected)\n", produced,
		       r.skipped, n_selected, n_read);
	else
		printf("%ld replayed, %ld failed, %ld skipped (%ld of %ld dead letters selected)\n", delivered,
		       failed, r.skipped, n_selected, n_read);
	rc = read_failed ? 2 : failed > 0 ? 1 : sl_ctl_interrupted() ? 130 : 0;
out:
	fflush(stdout);
	if (r.rk != NULL)
		rd_kafka_destroy(r.rk);
	for (i = 0; i < r.n_t; i++)
		free(r.t[i].topic);
	free(r.t);
	free(f.codes);
	free(replayed.v);
	sl_ctl_config_release(cfg); /* after the clients that use its properties */
	return rc;
}

/* ---- for the console (ctl_sources.h) ------------------------------------- */

/* Fills *f (OUT) with the filter of a query; f->codes points at `code`,
 * one slot the caller provides and keeps while f is used. */
static void
filter_of(const struct sl_ctl_dlq_query *q, struct filter *f, const char **code)
{
	struct filter all = FILTER_ALL;

	*f = all;
	if (q->code != NULL) {
		*code = q->code;
		f->codes = code;
		f->n_codes = 1;
	}
	f->type = q->type;
	f->id = q->id;
	f->subject = q->subject;
	f->key = q->key;
	f->partition = q->partition;
	f->offset = q->partition >= 0 ? q->offset : -1;
	f->limit = q->limit;
}

struct collect {
	json_t *letters;           /* borrowed */
	int with_value;
};

static int
collect_one(const struct letter *l, void *arg)
{
	struct collect *c = arg;
	json_t *o = letter_json(l);

	if (o == NULL)
		return -1;
	if (c->with_value && sl_ctl_json_set_bytes(o, "value", "value_base64", l->m->payload, l->m->len) != 0) {
		json_decref(o);
		return -1;
	}
	return json_array_append_new(c->letters, o);
}

json_t *
sl_ctl_dlq_read_json(const char *brokers, const char *topic, const struct sl_ctl_dlq_query *q,
                     int with_value, int timeout_ms, int64_t deadline_ms, char *errbuf, size_t errbuf_size)
{
	struct marks marks = { NULL, 0, 0 };
	struct collect c = { NULL, with_value };
	const char *code;
	struct filter f;
	json_t *out = NULL, *letters = NULL, *x;
	long n_read = 0, n_selected = 0;
	size_t i;

	filter_of(q, &f, &code);
	/* Markers follow their letters, so --pending (and the limit with it)
	 * is applied once the whole topic is read. */
	if (q->pending)
		f.limit = -1;
	letters = json_array();
	if (letters == NULL) {
		snprintf(errbuf, errbuf_size, "out of memory");
		goto out;
	}
	c.letters = letters;
	if (read_letters(brokers, topic, &f, collect_one, &c, &marks, &n_read, &n_selected, timeout_ms, deadline_ms,
	                 errbuf, errbuf_size) != 0)
		goto out;
	out = json_object();
	for (i = 0; out != NULL && i < json_array_size(letters);) {
		x = json_array_get(letters, i);
		if (marks_has(&marks, (int32_t)json_integer_value(json_object_get(x, "partition")),
		              json_integer_value(json_object_get(x, "offset")))) {
			if (q->pending) {
				json_array_remove(letters, i);
				n_selected--;
				continue;
			}
			json_object_set_new(x, "replayed", json_true());
		} else {
			json_object_set_new(x, "replayed", json_false());
		}
		i++;
	}
	while (q->pending && q->limit >= 0 && json_array_size(letters) > (size_t)q->limit) {
		json_array_remove(letters, json_array_size(letters) - 1);
		n_selected--;
	}
	if (out == NULL || json_object_set_new(out, "read", json_integer(n_read)) != 0 ||
	    json_object_set_new(out, "selected", json_integer(n_selected)) != 0 ||
	    json_object_set(out, "letters", letters) != 0) {
		snprintf(errbuf, errbuf_size, "out of memory");
		json_decref(out);
		out = NULL;
	}
out:
	json_decref(letters);
	free(marks.v);
	return out;
}

json_t *
sl_ctl_dlq_replay_json(const char *brokers, const char *topic, const struct sl_ctl_dlq_query *q,
                       int timeout_ms, char *errbuf, size_t errbuf_size)
{
	struct marks replayed = { NULL, 0, 0 };
	struct filter f, all = FILTER_ALL;
	const char *code;
	struct replay r;
	json_t *out = NULL, *ids = NULL, *sel = NULL, *x;
	long n_read = 0, n_selected = 0, delivered = 0, failed = 0;
	char why[512];
	size_t i;
	int read_failed;

	memset(&r, 0, sizeof(r));
	filter_of(q, &f, &code);
	if (q->pending) {
		if (read_letters(brokers, topic, &all, NULL, NULL, &replayed, &n_read, &n_selected, timeout_ms, 0,
		                 errbuf, errbuf_size) != 0)
			goto out;
		f.replayed = &replayed;
	}
	/* The job ids, to show what the replay sends: read first, from the
	 * letters the replay selects (a replay adds markers, not letters). */
	sel = sl_ctl_dlq_read_json(brokers, topic, q, 0, timeout_ms, 0, errbuf, errbuf_size);
	if (sel == NULL)
		goto out;
	r.rk = sl_ctl_producer_new(brokers, dr_msg_cb, &r, why, sizeof(why));
	if (r.rk == NULL) {
		snprintf(errbuf, errbuf_size, "could not create the kafka producer: %s", why);
		goto out;
	}
	r.dlq = topic;
	read_failed = read_letters(brokers, topic, &f, replay_one, &r, NULL, &n_read, &n_selected, timeout_ms, 0,
	                           errbuf, errbuf_size) != 0;
	sl_ctl_producer_flush(r.rk);
	for (i = 0; i < r.n_t; i++) {
		delivered += r.t[i].delivered;
		failed += r.t[i].failed;
	}
	ids = json_array();
	out = json_object();
	if (ids == NULL || out == NULL) {
		snprintf(errbuf, errbuf_size, "out of memory");
		json_decref(out);
		out = NULL;
		goto out;
	}
	json_array_foreach(json_object_get(sel, "letters"), i, x)
		if (json_is_string(json_object_get(x, "id")) && !json_is_true(json_object_get(x, "value_omitted")))
			json_array_append(ids, json_object_get(x, "id"));
	json_object_set_new(out, "selected", json_integer(n_selected));
	json_object_set_new(out, "replayed", json_integer(delivered));
	json_object_set_new(out, "failed", json_integer(failed));
	json_object_set_new(out, "skipped", json_integer(r.skipped));
	json_object_set(out, "ids", ids);
	if (r.first_failure[0] != '\0')
		json_object_set_new(out, "error", json_string(r.first_failure));
	else if (read_failed)
		json_object_set_new(out, "error", json_string(errbuf));
out:
	if (r.rk != NULL)
		rd_kafka_destroy(r.rk);
	for (i = 0; i < r.n_t; i++)
		free(r.t[i].topic);
	free(r.t);
	free(replayed.v);
	json_decref(ids);
	json_decref(sel);
	return out;
}
