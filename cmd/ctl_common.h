/* ctl_common.h -- helpers shared by the sluicectl subcommands.
 *
 * Error lines in the subcommands' voice, number parsing for options, the
 * Kafka settings every sluicectl client shares (brokers, quiet logging, one
 * line per distinct client error), assign-only readers, topic metadata, and
 * the time and byte formats of the JSON the subcommands print. Not for
 * anything the worker needs: that lives in common/.
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

/* Kafka brokers when neither --brokers nor SLUICE_KAFKA_BROKERS says. */
#define SL_CTL_DEFAULT_BROKERS "127.0.0.1:9092"

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

/* Parses a whole decimal integer in [min, max] into *out (OUT: set only on
 * success). Returns 0, or -1 when s is not such a number. */
int sl_ctl_parse_long(const char *s, long min, long max, long *out);

/* Parses a non-negative number of seconds ("2", "0.5") into *out (OUT: set
 * only on success). Returns 0 or -1. */
int sl_ctl_parse_seconds(const char *s, double *out);

/* Returns the brokers to use: `opt` (from --brokers) when not NULL, else
 * SLUICE_KAFKA_BROKERS when set and not empty, else the default. Borrowed. */
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

/* Looks `topic` up in the cluster and sets *partitions (OUT: 0 on failure) to
 * its partition count. Returns 0, or -1 with "topic ... does not exist" or
 * the broker error in errbuf. Blocks for at most timeout_ms. */
int sl_ctl_topic_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms, int *partitions,
                            char *errbuf, size_t errbuf_size);

/* Returns a new consumer that reads by rd_kafka_assign() only: a throwaway
 * group id ("sluicectl-<what>-<uuid>") that is never joined, no commits, no
 * offset store, enable.partition.eof as asked. It leaves no trace on the
 * brokers. The caller owns the handle (rd_kafka_consumer_close() then
 * rd_kafka_destroy()). NULL on failure, with the reason in errbuf. */
rd_kafka_t *sl_ctl_reader_new(const char *brokers, const char *what, int partition_eof, char *errbuf,
                              size_t errbuf_size);

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
