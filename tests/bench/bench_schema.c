/* bench_schema.c -- microseconds per validation with the shipped job schemas.
 *
 * Loads schemas/jobs/ledger.{open,transfer}.json once, as the worker does, and
 * validates typical job data (valid, and invalid with errors collected, as the
 * worker collects 3) in a loop. Run from the repository root: make bench-schema.
 * Not a unit test: it asserts nothing but the verdicts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "schema.h"

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Validates text against s iterations times; returns -1 when the verdict is
 * not want, else 0 after printing the time per validation. */
static int
bench(const char *label, const sl_schema_t *s, const char *text, int want, long iterations)
{
	struct sl_schema_error errs[3];
	json_t *inst = json_loads(text, 0, NULL);
	double t0, t1;
	size_t n;
	long i;
	int rc = 0;

	if (inst == NULL || sl_schema_validate(s, inst, errs, 3, &n) != want) {
		fprintf(stderr, "bench_schema: %s: unexpected verdict\n", label);
		rc = -1;
		goto out;
	}
	t0 = now_us();
	for (i = 0; i < iterations; i++)
		(void)sl_schema_validate(s, inst, errs, 3, &n);
	t1 = now_us();
	printf("%-28s %8.3f us/instance (%ld runs)\n", label, (t1 - t0) / (double)iterations, iterations);
out:
	json_decref(inst);
	return rc;
}

int
main(int argc, char **argv)
{
	long iterations = argc > 1 ? atol(argv[1]) : 200000;
	sl_schema_t *open_s, *transfer_s;
	char err[512];
	int rc = 0;

	open_s = sl_schema_load_file("schemas/jobs/ledger.open.json", NULL, 0, err, sizeof(err));
	if (open_s == NULL) {
		fprintf(stderr, "bench_schema: %s\n", err);
		return 1;
	}
	transfer_s = sl_schema_load_file("schemas/jobs/ledger.transfer.json", NULL, 0, err, sizeof(err));
	if (transfer_s == NULL) {
		fprintf(stderr, "bench_schema: %s\n", err);
		sl_schema_destroy(open_s);
		return 1;
	}
	rc |= bench("ledger.transfer valid", transfer_s, "{\"from\":\"acct-000123\",\"to\":\"acct-000456\",\"amount\":2500}", 0,
	            iterations);
	rc |= bench("ledger.transfer invalid", transfer_s, "{\"from\":\"acct-000123\",\"to\":\"\",\"amount\":0,\"memo\":\"x\"}",
	            1, iterations);
	rc |= bench("ledger.open valid", open_s, "{\"account\":\"acct-000123\",\"balance\":100000}", 0, iterations);
	rc |= bench("ledger.open invalid", open_s, "{\"account\":\"acct-000123\",\"balance\":-1}", 1, iterations);
	sl_schema_destroy(open_s);
	sl_schema_destroy(transfer_s);
	return rc ? 1 : 0;
}
