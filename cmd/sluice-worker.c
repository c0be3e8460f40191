/* sluice-worker.c -- the worker process: options, configuration, run loop.
 *
 * Parses the command line, loads the configuration and hands over to the
 * runtime in common/worker.c, with the built-in handlers of workers/ (the
 * runtime itself holds no business logic). Nothing here outlives main().
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "registry.h"
#include "version.h"
#include "worker.h"

static void
usage(FILE *out)
{
	fprintf(out,
	        "usage: sluice-worker [-n] [-c FILE]\n"
	        "\n"
	        "Consume jobs from Kafka, run them in PostgreSQL, publish results.\n"
	        "\n"
	        "  -c, --config FILE   configuration file (default ./worker.conf)\n"
	        "  -n, --check         check the configuration and exit\n"
	        "  -h, --help          show this help\n"
	        "  -V, --version       show the version\n"
	        "\n"
	        "Environment: SLUICE_KAFKA_BROKERS and SLUICE_PG_CONNINFO override the file.\n"
	        "Signals: SIGTERM/SIGINT drain and stop (twice: abandon), SIGHUP reloads.\n");
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = "worker.conf";
	struct sl_config *cfg;
	const struct sl_handler *builtins;
	char errbuf[1024];
	size_t n_builtins;
	int ch, check_only = 0, status;

	sl_log_set_program("sluice-worker");
	while ((ch = getopt_long(argc, argv, "c:nhV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'n':
			check_only = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("sluice-worker %s\n", SL_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "sluice-worker: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	builtins = sl_registry_all(&n_builtins);
	sl_worker_set_builtins(builtins, n_builtins);
	if ((cfg = sl_config_load(path, errbuf, sizeof(errbuf))) == NULL ||
	    (check_only ? sl_worker_check_deep(cfg, errbuf, sizeof(errbuf))
	                : sl_worker_check(cfg, errbuf, sizeof(errbuf))) < 0) {
		fprintf(stderr, "sluice-worker: %s\n", errbuf);
		sl_config_destroy(cfg);
		return 2;
	}
	if (check_only) {
		printf("%s: ok\n", path);
		sl_config_destroy(cfg);
		return 0;
	}
	status = sl_worker_run(cfg);
	sl_config_destroy(cfg);
	return status;
}
