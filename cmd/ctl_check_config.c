/* ctl_check_config.c -- `sluicectl check-config`: check a worker configuration.
 *
 * The same checks as `sluice-worker -n` (sl_config_load() and
 * sl_worker_check(): syntax, types, ranges, handlers, schemas), with a short
 * summary of what the worker would run with when the file is good: brokers,
 * group, topics, job types, executors and limits. The environment overrides
 * (SLUICE_KAFKA_BROKERS, SLUICE_PG_CONNINFO) apply as they would to the
 * worker, and the summary says so. The PostgreSQL conninfo is a secret and is
 * only ever shown through sl_pg_conninfo_redact().
 *
 * Not for: connecting to Kafka or PostgreSQL; a good file may still name a
 * broker that is down.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "ctl.h"
#include "ctl_common.h"
#include "pg.h"
#include "registry.h"
#include "worker.h"

#define DEFAULT_CONFIG "worker.conf"

static void
usage(FILE *out)
{
	fprintf(out,
	        "usage: sluicectl check-config [-c FILE | FILE]\n"
	        "\n"
	        "Checks a worker configuration as 'sluice-worker -n' does and prints\n"
	        "\"FILE: ok\" and a summary, or \"FILE:LINE: what is wrong\".\n"
	        "\n"
	        "  -c, --config FILE  the file (default \"" DEFAULT_CONFIG "\")\n"
	        "\n"
	        "SLUICE_KAFKA_BROKERS and SLUICE_PG_CONNINFO override the file, as for the\n"
	        "worker. Exit status: 0 good, 1 bad file, 2 usage error.\n");
}

/* Returns 1 when the environment variable overrides the file's setting. */
static int
overridden(const char *name)
{
	const char *v = getenv(name);

	return v != NULL && *v != '\0';
}

static void
print_retry(const struct sl_retry_policy *r)
{
	printf("retry %d attempt%s, backoff %g s to %g s (x%g)", r->max_attempts,
	       r->max_attempts == 1 ? "" : "s", r->initial_backoff, r->max_backoff, r->multiplier);
}

/* Prints what the worker would run with. Borrows cfg. This function can't fail. */
static void
print_summary(const struct sl_config *cfg)
{
	char conninfo[1024], path[4096];
	size_t i;

	printf("  kafka brokers   %s%s\n", cfg->brokers,
	       overridden("SLUICE_KAFKA_BROKERS") ? " (from SLUICE_KAFKA_BROKERS)" : "");
	printf("  group           %s\n", cfg->group);
	printf("  topics         ");
	for (i = 0; i < cfg->n_topics; i++)
		printf(" %s", cfg->topics[i]);
	printf("\n  dead letters    %s\n", cfg->dlq_topic);
	printf("  results         %s\n", cfg->result_topic);
	if (cfg->pg_conninfo == NULL || *cfg->pg_conninfo == '\0') {
		printf("  postgres        libpq's PG* environment\n");
	} else {
		/* Never the raw string: it may carry a password. */
		sl_pg_conninfo_redact(cfg->pg_conninfo, conninfo, sizeof(conninfo));
		printf("  postgres        %s%s\n", conninfo,
		       overridden("SLUICE_PG_CONNINFO") ? " (from SLUICE_PG_CONNINFO)" : "");
	}
	printf("  job types       %zu\n", cfg->n_jobs);
	for (i = 0; i < cfg->n_jobs; i++) {
		const struct sl_job_type *j = &cfg->jobs[i];

		printf("    %s: handler %s, schema %s, results %s, ", j->type, j->handler,
		       j->schema_path ? sl_config_path(cfg, j->schema_path, path, sizeof(path)) : "(none)",
		       j->result_topic ? j->result_topic : cfg->result_topic);
		print_retry(&j->retry);
		printf("\n");
	}
	printf("  postgres        pooling %s\n", cfg->pg_pooled ? "transaction (no prepared statements, bounds "
	                                                          "SET LOCAL)" : "none");
	printf("  executors       %d\n", cfg->executors);
	printf("  limits          max_in_flight %d, max_job_bytes %d, max_batch %d, "
	       "shutdown_timeout %g s, revoke_timeout %g s\n",
	       cfg->max_in_flight, cfg->max_job_bytes, cfg->max_batch, cfg->shutdown_timeout,
	       cfg->revoke_timeout);
	if (cfg->outbox.enabled)
		printf("  outbox relay    on: source %s, poll %g s, batch %d, lease %g s, to %s unless a row names "
		       "its topic\n",
		       cfg->outbox.source, cfg->outbox.poll_interval, cfg->outbox.batch, cfg->outbox.lease_ttl,
		       cfg->topics[0]);
	else
		printf("  outbox relay    off\n");
	printf("  http            %s\n", cfg->http_listen && *cfg->http_listen ? cfg->http_listen : "off");
}

int
sl_ctl_check_config(int argc, char **argv)
{
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL;
	struct sl_config *cfg = NULL;
	char errbuf[1024];
	int opt, rc = 1;
	const struct sl_handler *builtins;
	size_t n_builtins;

	sl_ctl_set_command("check-config");
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":hc:", options, NULL)) != -1) {
		switch (opt) {
		case 'c': path = optarg; break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return sl_ctl_option_error(opt, argc, argv);
		}
	}
	if (sl_ctl_operand(argc, argv, "configuration file", &path) != 0)
		return 2;
	if (path == NULL)
		path = DEFAULT_CONFIG;

	/* The built-in handlers are the worker's: the same table it runs. */
	builtins = sl_registry_all(&n_builtins);
	sl_worker_set_builtins(builtins, n_builtins);
	cfg = sl_config_load(path, errbuf, sizeof(errbuf));
	if (cfg == NULL || sl_worker_check(cfg, errbuf, sizeof(errbuf)) != 0) {
		/* Already `file:line: what is wrong`, for editors to jump to. */
		fprintf(stderr, "%s\n", errbuf);
		goto out;
	}
	printf("%s: ok\n", path);
	print_summary(cfg);
	rc = 0;
out:
	fflush(stdout);
	sl_config_destroy(cfg);
	return rc;
}
