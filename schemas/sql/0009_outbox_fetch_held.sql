-- The next rows of a shard, leaving out the rows of topics the relay holds.
--
-- A topic that does not exist (or that the relay may not write to) refuses
-- every row sent there. Such rows stay in the outbox, but at the head of
-- the shard's (xid, seq) order they took the relay's whole batch, round
-- after round, and the rows behind them for other topics waited. The relay
-- now names the topics it holds for a few seconds (p_held), and their rows
-- are left out of the batch; per-key order is per (topic, key), so leaving
-- out every row of a topic keeps it. p_default_topic is the topic of a row
-- whose topic is NULL (the relaying worker's first kafka.topics).
-- outbox_fetch(integer, integer) stays for workers not upgraded yet.
create function sluice.outbox_fetch(p_shard integer, p_limit integer, p_default_topic text, p_held text[])
returns table (xid xid8, seq bigint, id text, source text, type text, key text, topic text, data text,
               "time" text)
language sql
stable
as $$
    select o.xid, o.seq, o.id, o.source, o.type, o.key, o.topic, o.data::text,
           to_char(o.time at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    from sluice.outbox o
    where o.shard = p_shard and o.xid < pg_snapshot_xmin(pg_current_snapshot())
      and coalesce(o.topic, p_default_topic) <> all (coalesce(p_held, '{}'))
    order by o.xid, o.seq
    limit p_limit
$$;
