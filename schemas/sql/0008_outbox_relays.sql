-- Outbox shards spread over the relays that are alive.
--
-- Without this, the first relay to start takes every free shard and keeps
-- them all, so more shards bring no more relaying workers. Each relay now
-- says it is alive (sluice.outbox_heartbeat(), every third of its lease
-- time) and learns its fair share: the number of shards divided by the
-- relays alive (the remainder to the first of them by name). A relay holding more gives the rest back at a
-- batch boundary (sluice.outbox_release()); one holding fewer takes free or
-- expired shards up to its share. Shares are advisory: a lease is still what
-- makes a relay the only one of its shard.
create table sluice.outbox_relays (
    holder  text        primary key,
    seen_at timestamptz not null
);

-- Records that holder is alive (for p_ttl), forgets relays not seen for ten
-- lease times, and returns holder's fair share of the shards: the shards
-- divided by the relays alive, one more for the first (shards mod relays)
-- of them by name, so that the shares add up to the shards exactly.
create function sluice.outbox_heartbeat(p_holder text, p_ttl interval) returns integer
language plpgsql
volatile
as $$
declare
    alive integer;
    rank integer;
    shards integer;
begin
    insert into sluice.outbox_relays as r (holder, seen_at) values (p_holder, clock_timestamp())
    on conflict (holder) do update set seen_at = excluded.seen_at;
    delete from sluice.outbox_relays where seen_at < clock_timestamp() - 10 * p_ttl;
    select count(*), count(*) filter (where holder < p_holder) into alive, rank
    from sluice.outbox_relays where seen_at >= clock_timestamp() - p_ttl;
    select s.shards into shards from sluice.outbox_settings s;
    return shards / alive + case when rank < shards % alive then 1 else 0 end;
end
$$;

-- A relay that stops cleanly leaves at once, so the others' shares grow now
-- rather than after its lease time.
create function sluice.outbox_leave(p_holder text) returns void
language sql
volatile
as $$
    delete from sluice.outbox_relays where holder = p_holder
$$;

revoke execute on function sluice.outbox_heartbeat(text, interval) from public;
revoke execute on function sluice.outbox_leave(text) from public;
