/* sluicectl.c -- the operator's command line: dispatch to cmd/ctl_*.c.
 *
 * Only argument dispatch and the top-level help live here; each subcommand
 * parses its own options.
 */
#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "log.h"
#include "version.h"

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
	{ "migrate", sl_ctl_migrate, "apply SQL migrations, sluice's own or a folder's, to PostgreSQL" },
	{ "enqueue", sl_ctl_enqueue, "build job CloudEvents and produce them to Kafka" },
	{ "tail", sl_ctl_tail, "print result events (or --dlq dead letters) as JSON lines" },
	{ "validate", sl_ctl_validate, "validate a JSON instance against a JSON Schema (draft-07)" },
	{ "dlq", sl_ctl_dlq, "list and replay dead letters" },
	{ "lag", sl_ctl_lag, "consumer lag per partition, in messages and in time" },
	{ "status", sl_ctl_status, "summarise a running worker from its /metrics" },
	{ "check-config", sl_ctl_check_config, "check a worker configuration file and exit" },
	{ "outbox", sl_ctl_outbox, "outbox depth, relay lag, leases and what holds the watermark" },
	{ "schedule", sl_ctl_schedule, "list recurring jobs (sluice.schedule())" },
	{ "console", sl_ctl_console, "serve an operator's console in the browser" },
};

static void
usage(FILE *out)
{
	size_t i;

	fprintf(out, "usage: sluicectl COMMAND [OPTIONS]\n\ncommands:\n");
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (commands[i].run != NULL)
			fprintf(out, "  %-13s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\n'sluicectl COMMAND --help' describes a command's options.\n"
	             "Environment: SLUICE_KAFKA_BROKERS, SLUICE_PG_CONNINFO (or libpq's PG* variables).\n");
}

int
main(int argc, char **argv)
{
	size_t i;

	sl_log_set_program("sluicectl");
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("sluicectl %s\n", SL_VERSION);
		return 0;
	}
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[1], commands[i].name) != 0)
			continue;
		if (commands[i].run == NULL) {
			fprintf(stderr, "sluicectl: command \"%s\" is not available in this build\n", argv[1]);
			return 2;
		}
		return commands[i].run(argc - 1, argv + 1);
	}
	fprintf(stderr, "sluicectl: unknown command \"%s\" (see 'sluicectl --help')\n", argv[1]);
	return 2;
}
