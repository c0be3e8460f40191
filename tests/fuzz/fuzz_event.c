/* fuzz_event.c -- libFuzzer target for the CloudEvents decoder (event.c).
 *
 * Every Kafka message a producer can send goes through
 * sl_event_decode_message(), so this is the target for the boundary. The
 * input is read as a message:
 *
 *   byte 0          options: bits 0-3 the number of headers; bits 4-5 the
 *                   size limit (none, 64 bytes, the value's length, one
 *                   byte less); bit 6 a short errbuf (its size from byte 1);
 *                   bit 7 an empty value passed as NULL
 *   byte 1          the short errbuf's size, 1 to 64
 *   per header      a byte choosing the name (one of names[] below), a
 *                   length byte (255: a header without a value), the value
 *   the rest        the message value
 *
 * Checked on every input, beyond the sanitizers' own checks:
 * - sl_event_decode_message() takes the mode event.h says (binary exactly
 *   when a ce_specversion header is present) and gives what the chosen
 *   decoder gives on its own: the same return, code and message;
 * - success xor error: on 0 the code and message are empty and the event is
 *   whole (id, source and type non-empty strings of root, data an object of
 *   root, subject and time NULL or non-empty); on -1 the event is zeroed,
 *   the code is one of the decoder's SL_ERR_* codes and the message is not
 *   empty;
 * - the message is valid UTF-8 with no control characters (C0, DEL, C1,
 *   U+2028, U+2029), however hostile the input, and cut at any errbuf size;
 * - the two modes agree (event.h: binary mode fills *ev "exactly as
 *   sl_event_decode() would for the structured event with the same
 *   attributes and data"): a structured event that decodes, sent again in
 *   binary mode (its attributes as headers, its data as the value), decodes
 *   to the same attributes and data; and a binary one that decodes, sent
 *   again in structured mode (its root dumped), decodes to the same;
 * - sl_event_clear() is safe on any result, and twice.
 * Built and run by `make fuzz`; seeds and regression inputs live in
 * tests/fuzz/corpus/event.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                      \
	do {                             \
		if (!(cond))             \
			__builtin_trap(); \
	} while (0)

/* The names a header may have: the seven binary mode reads, an extension
 * attribute and a name it must ignore. */
static const char *const names[] = {
	"ce_specversion", "ce_id", "ce_source", "ce_type", "ce_subject",
	"ce_time", "content-type", "ce_ext", "other",
};
#define N_NAMES (sizeof(names) / sizeof(names[0]))

/* The codes a decoder may return (event.h). */
static const char *const decode_codes[] = {
	SL_ERR_MESSAGE_TOO_LARGE, SL_ERR_EMPTY_MESSAGE, SL_ERR_INVALID_JSON,
	SL_ERR_NUMBER_OUT_OF_RANGE, SL_ERR_NOT_AN_OBJECT, SL_ERR_MISSING_ATTRIBUTE,
	SL_ERR_INVALID_ATTRIBUTE, SL_ERR_UNSUPPORTED_VERSION, SL_ERR_INVALID_DATA,
};

/* One decode: what a decoder returned and wrote. */
struct outcome {
	int rc;
	struct sl_event ev;
	char code[32];
	char err[1024];
};

static int
is_decode_code(const char *code)
{
	size_t i;

	for (i = 0; i < sizeof(decode_codes) / sizeof(decode_codes[0]); i++)
		if (strcmp(code, decode_codes[i]) == 0)
			return 1;
	return 0;
}

/* Traps unless s is valid UTF-8 (jansson's test) without C0, DEL, C1,
 * U+2028 or U+2029. */
static void
check_clean_text(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), i;
	json_t *valid = json_stringn(s, n);

	CHECK(valid != NULL);
	json_decref(valid);
	for (i = 0; i < n; i++) {
		CHECK(p[i] >= 0x20 && p[i] != 0x7f);
		CHECK(!(p[i] == 0xc2 && i + 1 < n && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f));
		CHECK(!(p[i] == 0xe2 && i + 2 < n && p[i + 1] == 0x80 && (p[i + 2] == 0xa8 || p[i + 2] == 0xa9)));
	}
}

/* Checks the contract of one decoder's outcome; errbuf_size is the size it
 * was given. */
static void
check_outcome(const struct outcome *o, size_t errbuf_size)
{
	const struct sl_event *ev = &o->ev;
	struct sl_event zero = { 0 };

	check_clean_text(o->err);
	CHECK(strlen(o->err) < errbuf_size);
	if (o->rc != 0) {
		CHECK(o->rc == -1);
		CHECK(memcmp(ev, &zero, sizeof(zero)) == 0);
		CHECK(is_decode_code(o->code));
		CHECK(errbuf_size <= 1 || o->err[0] != '\0');
		return;
	}
	CHECK(o->code[0] == '\0' && o->err[0] == '\0');
	CHECK(json_is_object(ev->root));
	CHECK(ev->id != NULL && ev->id[0] != '\0' && strlen(ev->id) <= 1024);
	CHECK(ev->source != NULL && ev->source[0] != '\0' && strlen(ev->source) <= 1024);
	CHECK(ev->type != NULL && ev->type[0] != '\0' && strlen(ev->type) <= 1024);
	CHECK(ev->id == json_string_value(json_object_get(ev->root, "id")));
	CHECK(ev->source == json_string_value(json_object_get(ev->root, "source")));
	CHECK(ev->type == json_string_value(json_object_get(ev->root, "type")));
	CHECK(ev->subject == NULL || (ev->subject[0] != '\0' &&
	                              ev->subject == json_string_value(json_object_get(ev->root, "subject"))));
	CHECK(ev->time == NULL || (ev->time[0] != '\0' &&
	                           ev->time == json_string_value(json_object_get(ev->root, "time"))));
	CHECK(json_is_object(ev->data) && ev->data == json_object_get(ev->root, "data"));
	CHECK(strcmp(json_string_value(json_object_get(ev->root, "specversion")), "1.0") == 0);
}

/* Traps unless a and b (both decoded) carry the same attributes and data. */
static void
check_same_event(const struct sl_event *a, const struct sl_event *b)
{
	CHECK(strcmp(a->id, b->id) == 0);
	CHECK(strcmp(a->source, b->source) == 0);
	CHECK(strcmp(a->type, b->type) == 0);
	CHECK((a->subject == NULL) == (b->subject == NULL));
	CHECK(a->subject == NULL || strcmp(a->subject, b->subject) == 0);
	CHECK((a->time == NULL) == (b->time == NULL));
	CHECK(a->time == NULL || strcmp(a->time, b->time) == 0);
	CHECK(json_equal(a->data, b->data));
}

static void
outcome_clear(struct outcome *o)
{
	sl_event_clear(&o->ev);
	CHECK(o->ev.root == NULL);
	sl_event_clear(&o->ev);
}

/* The structured event ev (decoded), sent in binary mode: each context
 * attribute it has as its header, the data dumped as the value. */
static void
check_as_binary(const struct sl_event *ev)
{
	static const char *const attrs[] = { "specversion", "id", "source", "type", "subject", "time",
		                             "datacontenttype" };
	struct sl_event_header h[7];
	struct outcome o = { 0 };
	size_t i, n = 0;
	char *value;
	json_t *v;

	for (i = 0; i < 7; i++) {
		v = json_object_get(ev->root, attrs[i]);
		if (!json_is_string(v))
			continue; /* absent or null: no header */
		h[n].name = names[i];
		h[n].value = json_string_value(v);
		h[n].len = json_string_length(v);
		n++;
	}
	value = json_dumps(ev->data, JSON_COMPACT);
	CHECK(value != NULL);
	o.rc = sl_event_decode_message(value, strlen(value), h, n, 0, &o.ev, o.code, o.err, sizeof(o.err));
	check_outcome(&o, sizeof(o.err));
	CHECK(o.rc == 0);
	check_same_event(ev, &o.ev);
	outcome_clear(&o);
	free(value);
}

/* Returns how deep v nests (a scalar is 1). */
static size_t
depth(json_t *v)
{
	size_t d = 0, k, i;
	const char *key;
	json_t *item;

	if (json_is_object(v)) {
		json_object_foreach(v, key, item)
			if ((k = depth(item)) > d)
				d = k;
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, item)
			if ((k = depth(item)) > d)
				d = k;
	}
	return d + 1;
}

/* The binary event ev (decoded), sent in structured mode: its root, which
 * binary mode built as the structured form, dumped. (Binary mode refuses
 * data nested as deep as the parser goes, which structured mode could not
 * hold inside its envelope; the check below stays as a guard.) */
static void
check_as_structured(const struct sl_event *ev)
{
	struct outcome o = { 0 };
	char *text;

	if (depth(ev->data) >= JSON_PARSER_MAX_DEPTH)
		return;
	text = json_dumps(ev->root, JSON_COMPACT);
	CHECK(text != NULL);
	o.rc = sl_event_decode_message(text, strlen(text), NULL, 0, 0, &o.ev, o.code, o.err, sizeof(o.err));
	check_outcome(&o, sizeof(o.err));
	CHECK(o.rc == 0);
	check_same_event(ev, &o.ev);
	outcome_clear(&o);
	free(text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sl_event_header h[15];
	struct outcome msg = { 0 }, alone = { 0 };
	size_t i = 2, n_headers, n = 0, len, max_bytes = 0, errbuf_size = sizeof(msg.err);
	const void *value;
	int binary = 0;

	if (size < 2)
		return 0;
	n_headers = data[0] & 0x0f;
	while (n < n_headers && i + 2 <= size) {
		h[n].name = names[data[i] % N_NAMES];
		len = data[i + 1];
		i += 2;
		if (len == 255) {
			h[n].value = NULL;
			h[n].len = 0;
		} else {
			if (len > size - i)
				len = size - i;
			h[n].value = data + i;
			h[n].len = len;
			i += len;
		}
		binary |= strcmp(h[n].name, "ce_specversion") == 0;
		n++;
	}
	len = size - i;
	/* Exactly len bytes, so that ASan sees a read past the end. */
	value = data + i;
	if (len == 0 && (data[0] & 0x80))
		value = NULL;
	switch ((data[0] >> 4) & 3) {
	case 1: max_bytes = 64; break;
	case 2: max_bytes = len; break;
	case 3: max_bytes = len > 1 ? len - 1 : 1; break;
	}
	if (data[0] & 0x40)
		errbuf_size = 1 + data[1] % 64;

	msg.rc = sl_event_decode_message(value, len, h, n, max_bytes, &msg.ev, msg.code, msg.err,
	                                 errbuf_size);
	check_outcome(&msg, errbuf_size);
	if (max_bytes > 0 && len > max_bytes)
		CHECK(msg.rc == -1 && strcmp(msg.code, SL_ERR_MESSAGE_TOO_LARGE) == 0);

	/* The mode event.h names, and the same outcome as that decoder alone. */
	if (binary)
		alone.rc = sl_event_decode_binary(value, len, h, n, max_bytes, &alone.ev, alone.code,
		                                  alone.err, errbuf_size);
	else
		alone.rc = sl_event_decode(value, len, max_bytes, &alone.ev, alone.code, alone.err,
		                           errbuf_size);
	CHECK(alone.rc == msg.rc && strcmp(alone.code, msg.code) == 0 && strcmp(alone.err, msg.err) == 0);
	if (msg.rc == 0)
		check_same_event(&msg.ev, &alone.ev);
	outcome_clear(&alone);

	if (msg.rc == 0) {
		if (binary)
			check_as_structured(&msg.ev);
		else
			check_as_binary(&msg.ev);
	}
	outcome_clear(&msg);
	return 0;
}
