/* ctl_common.h -- helpers shared by the sluicectl subcommands.
 *
 * Error lines in the subcommands' voice, operands and number parsing for
 * options, SIGINT/SIGTERM, the Kafka settings every sluicectl client shares
 * (brokers, quiet logging, one line per distinct client error), the worker
 * configuration a subcommand may read its defaults from (-c), assign-only
 * readers, the acks=all producer, topic metadata, and the time and byte
 * formats of the JSON the subcommands print. Not for anything the worker
 * needs: that lives in common/.
 *
 * Everything here is meant for the main thread of a short-lived command,
 * except the librdkafka callbacks installed by sl_ctl_kafka_conf(), which
 * librdkafka calls from whichever thread polls.
 */
#ifndef SL_CTL_COMMON_H
#define SL_CTL_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>

struct sl_config;

/* Kafka brokers when neither --brokers nor SLUICE_KAFKA_BROKERS says. */
#define SL_CTL_DEFAULT_BROKERS "127.0.0.1:9092"

/* How long a produced message may wait for its acknowledgement before it is
 * reported as failed. librdkafka's default (5 minutes) is long for an
 * interactive command facing an unreachable broker. */
#define SL_CTL_MESSAGE_TIMEOUT_MS 30000

/* Flags of sl_ctl_reader_new(). */
#define SL_CTL_READER_EOF      0x1 /* enable.partition.eof: an event at each partition's end */
#define SL_CTL_READER_EARLIEST 0x2 /* auto.offset.reset=earliest (else librdkafka's latest) */

/* Names the running subcommand ("migrate") for sl_ctl_error() and the Kafka
 * error callback. Call once, before anything else; `cmd` is borrowed and must
 * outlive the command (argv[0] or a literal). */
void sl_ctl_set_command(const char *cmd);

/* Writes "sluicectl CMD: message" and a newline to stderr. */
void sl_ctl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Reports a getopt_long() failure (started with an optstring beginning with
 * ':'): `opt` is what it returned (':' for a missing value, '?' otherwise).
 * Returns 2, the exit status for a usage error. */
int sl_ctl_option_error(int opt, int argc, char **argv);

/* Reports an operand the command does not take ("unexpected argument").
 * Returns 2, the exit status for a usage error. */
int sl_ctl_argument_error(const char *arg);

/* Takes the command's one optional operand, argv[optind] after getopt_long(),
 * into *value (OUT: set only when there is one), as an alternative to the
 * option that may already have set *value. Returns 0, or 2 after reporting
 * "expected one WHAT" when there are two operands or an operand and the
 * option. */
int sl_ctl_operand(int argc, char **argv, const char *what, const char **value);

/* Makes SIGINT and SIGTERM set the flag sl_ctl_interrupted() returns. No
 * SA_RESTART: a signal must interrupt a getline() blocked on a terminal. */
void sl_ctl_catch_interrupts(void);

/* Returns 1 once SIGINT or SIGTERM came (after sl_ctl_catch_interrupts()), else 0. */
int sl_ctl_interrupted(void);

/* Parses a whole decimal integer in [min, max] into *out (OUT: set only on
 * success). Returns 0, or -1 when s is not such a number. */
int sl_ctl_parse_long(const char *s, long min, long max, long *out);

/* Parses a non-negative number of seconds ("2", "0.5") into *out (OUT: set
 * only on success). Returns 0 or -1. */
int sl_ctl_parse_seconds(const char *s, double *out);

/* Loads the worker configuration at `path` (what sluice-worker -c reads) for
 * a subcommand's -c, and makes it the one sl_ctl_brokers() and
 * sl_ctl_kafka_conf() use from then on: its brokers, and its kafka.properties
 * (security settings and the like) in every client. Returns a new
 * configuration, which must outlive the clients made after this call (free
 * it with sl_ctl_config_release()), or NULL after reporting why
 * ("FILE:LINE: what is wrong"). */
struct sl_config *sl_ctl_config_load(const char *path);

/* Stops using cfg (sl_ctl_config_load()) and frees it. NULL is a no-op. */
void sl_ctl_config_release(struct sl_config *cfg);

/* Returns the brokers to use: `opt` (from --brokers) when not NULL, else
 * those of the configuration loaded with -c (where SLUICE_KAFKA_BROKERS
 * already overrides the file), else SLUICE_KAFKA_BROKERS when set and not
 * empty, else the default. Borrowed. */
const char *sl_ctl_brokers(const char *opt);

/* Returns a new configuration with bootstrap.servers, client.id, a log
 * callback that keeps librdkafka's own chatter off the terminal (it is shown
 * with SLUICECTL_DEBUG set in the environment) and an error callback that
 * prints each distinct client error once. The caller owns the result (pass it
 * to rd_kafka_new() or rd_kafka_conf_destroy() it). NULL on failure, with the
 * reason in errbuf. */
rd_kafka_conf_t *sl_ctl_kafka_conf(const char *brokers, char *errbuf, size_t errbuf_size);

/* Sets one property; returns 0, or -1 with librdkafka's reason in errbuf. */
int sl_ctl_kafka_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errbuf,
                     size_t errbuf_size);

/* Returns a new client of the given type made from conf, which it steals
 * (also on failure: it is then destroyed). NULL on failure, with
 * librdkafka's reason in errbuf. */
rd_kafka_t *sl_ctl_kafka_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *errbuf,
                             size_t errbuf_size);

/* Looks `topic` up in the cluster and sets *partitions (OUT: 0 on failure) to
 * its partition count. Returns 0, or -1 with "topic ... does not exist" or
 * the broker error in errbuf. Blocks for at most timeout_ms. */
int sl_ctl_topic_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms, int *partitions,
                            char *errbuf, size_t errbuf_size);

/* Looks `topic` up as sl_ctl_topic_partitions() does and adds each of its
 * partitions to `parts` (borrowed) with the given start offset. Returns 0,
 * or -1 with the reason in errbuf and nothing added. */
int sl_ctl_topic_add_partitions(rd_kafka_t *rk, const char *topic, int64_t offset, int timeout_ms,
                                rd_kafka_topic_partition_list_t *parts, char *errbuf,
                                size_t errbuf_size);

/* Returns a new consumer that reads by rd_kafka_assign() only: a throwaway
 * group id ("sluicectl-<what>-<uuid>") that is never joined, no commits, no
 * offset store, and what `flags` (SL_CTL_READER_*) ask for. It leaves no
 * trace on the brokers. The caller owns the handle (sl_ctl_consumer_destroy()).
 * NULL on failure, with the reason in errbuf. */
rd_kafka_t *sl_ctl_reader_new(const char *brokers, const char *what, int flags, char *errbuf,
                              size_t errbuf_size);

/* Closes and destroys a consumer (it leaves no group membership behind when
 * it never subscribed). NULL is a no-op. */
void sl_ctl_consumer_destroy(rd_kafka_t *rk);

/* Reports the consumer error event m (borrowed; m->err is set) as
 * "kafka: ...". Returns -1 when the reader cannot go on (a fatal client
 * error, the topic gone or not allowed), else 0. */
int sl_ctl_consumer_error(const rd_kafka_message_t *m);

/* Returns a new idempotent producer (acks=all, linger.ms 5, message.timeout.ms
 * SL_CTL_MESSAGE_TIMEOUT_MS, and Java's murmur2_random partitioner, so that a
 * key lands on the same partition whichever client produced it) whose
 * delivery reports go to dr_cb with `opaque` (borrowed) as its opaque. The
 * caller owns the handle (rd_kafka_destroy()). NULL on failure, with the
 * reason in errbuf. */
rd_kafka_t *sl_ctl_producer_new(const char *brokers,
                                void (*dr_cb)(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque),
                                void *opaque, char *errbuf, size_t errbuf_size);

/* Waits until every produced message has its delivery report. Messages carry
 * SL_CTL_MESSAGE_TIMEOUT_MS, so this ends; the deadline is a second guard,
 * after which what is left is purged so that its reports (failures) still
 * reach dr_cb. Call from the thread that polls rk. This function can't fail. */
void sl_ctl_producer_flush(rd_kafka_t *rk);

/* Writes why the message of a failed delivery report (m borrowed, m->err set)
 * was not delivered into buf: the fatal error's own text for a fatal error,
 * else the error's. Returns buf. This function can't fail. */
const char *sl_ctl_delivery_error(rd_kafka_t *rk, const rd_kafka_message_t *m, char *buf,
                                  size_t buf_size);

/* Formats a Kafka timestamp (milliseconds since the epoch) as RFC 3339 UTC
 * with milliseconds ("2024-05-01T12:00:00.123Z") into buf; "-" when ms < 0.
 * Returns buf. This function can't fail (a short buf truncates). */
const char *sl_ctl_format_ms(int64_t ms, char *buf, size_t buf_size);

/* Parses a point in time for --since/--until: RFC 3339 ("2024-05-01T12:00:00Z",
 * fractions and +hh:mm offsets allowed) or a duration before now ("90s",
 * "15m", "2h", "7d", a bare number meaning seconds). Sets *ms (OUT: set only
 * on success) to milliseconds since the epoch. Returns 0 or -1. */
int sl_ctl_parse_time(const char *s, int64_t *ms);

/* Returns the current time in milliseconds since the epoch. */
int64_t sl_ctl_now_ms(void);

/* Sets obj[name] to the len bytes at p as a string when they are UTF-8,
 * else obj[name_base64] to their base64; p NULL gives obj[name] = null.
 * `obj` is a borrowed jansson object. Returns 0, or -1 when out of memory. */
int sl_ctl_json_set_bytes(json_t *obj, const char *name, const char *name_base64, const void *p,
                          size_t len);

/* Returns a new malloc'ed, NUL-terminated standard base64 (RFC 4648, with
 * padding) encoding of len bytes, or NULL when out of memory. */
char *sl_ctl_base64(const void *data, size_t len);

#endif
