/* ctl_validate.c -- `sluicectl validate`: check a JSON document against a JSON Schema.
 *
 * Compiles the schema with schema.c, exactly as the worker does, so that an
 * operator can try a job payload or a new schema before deploying it. Remote
 * $refs resolve only through --ref PREFIX=DIR mappings. Not for validating
 * whole CloudEvents against their job type's schema: that is the worker's
 * routing, and this command knows no job types.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ctl.h"
#include "ctl_common.h"
#include "schema.h"

#define MAX_REFS 32
#define MAX_ERRS 64

/* The instance size read by default; a job is at most limits.max_job_bytes
 * (256 KiB by default, 64 MiB at most) anyway. jansson needs about 30 times
 * a document's size in memory, so the bound is what keeps a stray
 * /dev/zero or a log file from taking the machine's memory. */
#define DEFAULT_MAX_BYTES (16L * 1024 * 1024)

static void
usage(FILE *out)
{
	fprintf(out,
	        "usage: sluicectl validate --schema FILE [--ref URI_PREFIX=DIR]... [--max-bytes N]\n"
	        "                          [INSTANCE_FILE]\n"
	        "\n"
	        "Validates the JSON document in INSTANCE_FILE (standard input when absent)\n"
	        "against the JSON Schema (draft-07) in FILE.\n"
	        "\n"
	        "  -s, --schema FILE        the schema\n"
	        "  -r, --ref PREFIX=DIR     resolve remote $refs starting with PREFIX from files\n"
	        "                           under DIR (repeatable), e.g.\n"
	        "                           --ref https://schemas.example.com/=./schemas\n"
	        "  -m, --max-bytes N        refuse an instance larger than N bytes (default 16 MiB)\n"
	        "  -h, --help               this text\n"
	        "\n"
	        "Exit status: 0 valid (nothing is printed), 1 invalid or not JSON (one error\n"
	        "per line on standard error), 2 usage error, unreadable file or bad schema.\n");
}

/* Reads the instance from path, or standard input when path is NULL, up to
 * max_bytes. Returns a new reference, or NULL with the reason in errbuf and
 * *unreadable set when the input could not be read at all or is too large
 * (as opposed to not being JSON). */
static json_t *
read_instance(const char *path, size_t max_bytes, int *unreadable, char *errbuf, size_t errbuf_size)
{
	size_t len = 0, cap = 0, n;
	char *buf = NULL, *nb;
	json_error_t jerr;
	json_t *doc = NULL;
	FILE *f = stdin;

	*unreadable = 1;
	if (path != NULL && (f = fopen(path, "r")) == NULL) {
		snprintf(errbuf, errbuf_size, "could not open instance file \"%s\": %m", path);
		return NULL;
	}
	/* Read it all first: a second parse needs the bytes again. */
	do {
		if (len > max_bytes) {
			snprintf(errbuf, errbuf_size, "instance \"%s\" is larger than %zu bytes (see --max-bytes)",
			         path ? path : "<stdin>", max_bytes);
			goto out;
		}
		if (len == cap) {
			/* One byte past the limit is enough to know it is too large. */
			cap = cap ? cap * 2 : 65536;
			if (cap > max_bytes + 1)
				cap = max_bytes + 1;
			if ((nb = realloc(buf, cap)) == NULL) {
				snprintf(errbuf, errbuf_size, "out of memory");
				goto out;
			}
			buf = nb;
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
	} while (n > 0);
	if (ferror(f)) {
		snprintf(errbuf, errbuf_size, "could not read \"%s\": %m", path ? path : "<stdin>");
		goto out;
	}
	*unreadable = 0;
	doc = json_loadb(buf, len, JSON_DECODE_ANY, &jerr);
	/* Integers beyond 64 bits are read as doubles (see schema.h, numbers). */
	if (doc == NULL && strstr(jerr.text, "too big") != NULL)
		doc = json_loadb(buf, len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &jerr);
	if (doc == NULL)
		snprintf(errbuf, errbuf_size, "%s:%d: instance is not JSON: %s", path ? path : "<stdin>", jerr.line,
		         jerr.text);
out:
	if (path != NULL)
		fclose(f);
	free(buf);
	return doc;
}

int
sl_ctl_validate(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "schema", required_argument, NULL, 's' },
		{ "ref", required_argument, NULL, 'r' },
		{ "max-bytes", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct sl_schema_ref refs[MAX_REFS];
	struct sl_schema_error errs[MAX_ERRS];
	const char *schema_path = NULL;
	char errbuf[1024], *eq;
	size_t n_refs = 0, n_errs = 0, i;
	sl_schema_t *schema = NULL;
	json_t *instance = NULL;
	int opt, rc = 2, unreadable;
	long max_bytes = DEFAULT_MAX_BYTES;

	sl_ctl_set_command("validate");
	optind = 1;
	while ((opt = getopt_long(argc, argv, "s:r:m:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'm':
			if (sl_ctl_parse_long(optarg, 1, 1L << 40, &max_bytes) != 0) {
				sl_ctl_error("--max-bytes wants a number of bytes from 1, got \"%s\"", optarg);
				goto out;
			}
			break;
		case 's':
			schema_path = optarg;
			break;
		case 'r':
			if ((eq = strchr(optarg, '=')) == NULL || eq == optarg || eq[1] == '\0') {
				sl_ctl_error("--ref wants URI_PREFIX=DIR, got \"%s\"", optarg);
				goto out;
			}
			if (n_refs == MAX_REFS) {
				sl_ctl_error("at most %d --ref options", MAX_REFS);
				goto out;
			}
			*eq = '\0'; /* argv is ours to split */
			refs[n_refs].prefix = optarg;
			refs[n_refs++].dir = eq + 1;
			break;
		case 'h':
			usage(stdout);
			rc = 0;
			goto out;
		default:
			usage(stderr);
			goto out;
		}
	}
	if (schema_path == NULL || argc - optind > 1) {
		usage(stderr);
		goto out;
	}
	if ((schema = sl_schema_load_file(schema_path, refs, n_refs, errbuf, sizeof(errbuf))) == NULL) {
		sl_ctl_error("could not load schema: %s", errbuf);
		goto out;
	}
	instance = read_instance(optind < argc ? argv[optind] : NULL, (size_t)max_bytes, &unreadable, errbuf,
	                         sizeof(errbuf));
	if (instance == NULL) {
		sl_ctl_error("%s", errbuf);
		rc = unreadable ? 2 : 1;
		goto out;
	}
	rc = sl_schema_validate(schema, instance, errs, MAX_ERRS, &n_errs);
	if (rc < 0) {
		sl_ctl_error("could not validate: %s", n_errs ? errs[0].message : "internal error");
		rc = 2;
		goto out;
	}
	for (i = 0; i < n_errs; i++)
		fprintf(stderr, "at %s: %s (schema %s)\n", errs[i].instance_path[0] ? errs[i].instance_path : "root",
		        errs[i].message, errs[i].schema_path);
out:
	json_decref(instance);
	sl_schema_destroy(schema);
	return rc;
}
