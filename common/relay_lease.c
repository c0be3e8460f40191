/* relay_lease.c -- the outbox relay's shard leases: take, renew, give back.
 *
 * A relay relays a shard only while it holds the shard's lease
 * (sluice.outbox_leases); taking one raises its epoch, which fences every
 * delete the relay makes (sluice.outbox_ack()). Relays say they are alive
 * and learn their fair share of the shards (sluice.outbox_heartbeat()), so
 * shards spread over the workers. Not for: relaying rows (relay.c). Relay
 * thread only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "config.h"
#include "clock.h"
#include "log.h"
#include "relay_int.h"
#include "worker_int.h"

/* Forgets held[i] (the last one takes its place). */
void
sl__relay_drop_held(struct sl_relay *r, size_t i)
{
	r->held[i] = r->held[--r->n_held];
	sl_metrics_gauge_set(r->m_held, (double)r->n_held);
}

/* Renews the lease of held[i]. Returns 0, or -1 when it is lost (dropped)
 * or PostgreSQL failed (the connection may be gone). */
int
sl__relay_renew(struct sl_relay *r, size_t i)
{
	char shard[16], epoch[24], ttl[32];
	const char *values[3] = { shard, epoch, ttl };
	long long e;

	snprintf(shard, sizeof(shard), "%d", r->held[i].shard);
	snprintf(epoch, sizeof(epoch), "%lld", r->held[i].epoch);
	snprintf(ttl, sizeof(ttl), "%.3f seconds", r->cfg->outbox.lease_ttl);
	e = sl__relay_scalar(r, "select sluice.outbox_renew($1, $2, $3::interval)", 3, values);
	if (r->conn == NULL)
		return -1;
	if (e != r->held[i].epoch) {
		sl_log_warn("outbox relay: lost the lease of shard %d (epoch %lld): another relay took it over",
		            r->held[i].shard, r->held[i].epoch);
		sl__relay_drop_held(r, i);
		return -1;
	}
	r->held[i].renewed_at = sl_now();
	return 0;
}

/* Gives the lease of held[i] back and forgets it. */
static void
release_one(struct sl_relay *r, size_t i)
{
	char shard[16], epoch[24];
	const char *values[2] = { shard, epoch };

	snprintf(shard, sizeof(shard), "%d", r->held[i].shard);
	snprintf(epoch, sizeof(epoch), "%lld", r->held[i].epoch);
	sl__relay_scalar(r, "select 0 from sluice.outbox_release($1, $2)", 2, values);
	sl__relay_drop_held(r, i);
}

/* Says this relay is alive, renews held leases, gives back those beyond its
 * fair share (sluice.outbox_heartbeat(): the shards over the relays alive,
 * the remainder to the first by name) and takes free or expired ones up to
 * it. Called between batches only, so a shard given back has nothing in
 * flight. Returns 0, or -1 when PostgreSQL failed. */
int
sl__relay_refresh_leases(struct sl_relay *r)
{
	char errbuf[512], state[6], ttl[32];
	const char *values[3];
	PGresult *res;
	long long share;
	size_t i, j;
	int n, k;

	snprintf(ttl, sizeof(ttl), "%.3f seconds", r->cfg->outbox.lease_ttl);
	values[0] = r->holder;
	values[1] = ttl;
	share = sl__relay_scalar(r, "select sluice.outbox_heartbeat($1, $2::interval)", 2, values);
	if (r->conn == NULL)
		return -1;
	if (share < 0)
		share = 1 << 20; /* the heartbeat failed (logged): take what is free, as before shares */
	r->share = (int)share;
	for (i = r->n_held; i-- > 0;)
		if (sl__relay_renew(r, i) < 0 && r->conn == NULL)
			return -1;
	res = sl__relay_query(r, "select shard from sluice.outbox_leases order by shard", 0, NULL, state, errbuf,
	            sizeof(errbuf));
	if (res == NULL) {
		sl__relay_disconnect(r, errbuf);
		return -1;
	}
	n = PQntuples(res);
	/* Shards that went away (sluice.outbox_set_shards()). */
	for (i = r->n_held; i-- > 0;) {
		for (k = 0; k < n; k++)
			if (atoi(PQgetvalue(res, k, 0)) == r->held[i].shard)
				break;
		if (k == n)
			sl__relay_drop_held(r, i);
	}
	while (r->conn != NULL && r->n_held > (size_t)r->share) {
		sl_log_info("outbox relay: giving shard %d back (%zu held, fair share %d)",
		            r->held[r->n_held - 1].shard, r->n_held, r->share);
		release_one(r, r->n_held - 1);
	}
	for (k = 0; k < n && r->conn != NULL && r->n_held < (size_t)r->share; k++) {
		const char *shard = PQgetvalue(res, k, 0);
		long long e;

		for (j = 0; j < r->n_held; j++)
			if (r->held[j].shard == atoi(shard))
				break;
		if (j < r->n_held)
			continue;
		values[0] = shard;
		values[1] = r->holder;
		values[2] = ttl;
		e = sl__relay_scalar(r, "select sluice.outbox_acquire($1, $2, $3::interval)", 3, values);
		if (e < 0)
			continue; /* another relay holds it */
		if (r->n_held == r->cap_held) {
			r->cap_held = r->cap_held ? r->cap_held * 2 : 4;
			if ((r->held = realloc(r->held, r->cap_held * sizeof(*r->held))) == NULL)
				abort();
		}
		r->held[r->n_held].shard = atoi(shard);
		r->held[r->n_held].epoch = e;
		r->held[r->n_held].renewed_at = sl_now();
		r->n_held++;
		sl_log_info("outbox relay: relaying shard %s (lease epoch %lld)", shard, e);
	}
	PQclear(res);
	if (r->conn == NULL)
		return -1;
	sl_metrics_gauge_set(r->m_held, (double)r->n_held);
	return 0;
}

/* Gives every held lease back and leaves the relays, at a clean stop. */
void
sl__relay_release_leases(struct sl_relay *r)
{
	const char *values[1] = { r->holder };

	while (r->conn != NULL && r->n_held > 0)
		release_one(r, r->n_held - 1);
	if (r->conn != NULL)
		sl__relay_scalar(r, "select 0 from sluice.outbox_leave($1)", 1, values);
	r->n_held = 0;
}
