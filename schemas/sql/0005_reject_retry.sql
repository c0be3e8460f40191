-- sluice.reject() and sluice.retry(): how a SQL-function handler
-- (handler = "sql:SCHEMA.FUNCTION") says "no" or "not now".
--
-- Both raise, so the handler's effects roll back with its transaction and
-- nothing after the call runs; the worker reads the SQLSTATE:
--
--   SL002  rejected: a business refusal, a final outcome, no dead letter.
--          MESSAGE is the message (else the code), DETAIL the code.
--   SL003  retry: tried again later, counting an attempt. MESSAGE is the
--          message, DETAIL the seconds to wait at least ("" when the
--          handler leaves it to the job type's backoff).
--
-- They are declared to return jsonb, which they never do, so that a handler
-- can write `return sluice.reject('out_of_stock', 'only 3 left');` as well as
-- `perform sluice.reject(...)`. Not STRICT: a strict function called with a
-- NULL would return NULL without running, and NULL from a handler is success.
create function sluice.reject(code text, message text default null) returns jsonb
language plpgsql
volatile
as $$
begin
    if code is null or code = '' then
        raise exception 'sluice.reject() needs a code' using errcode = 'null_value_not_allowed';
    end if;
    raise exception using errcode = 'SL002', message = coalesce(message, code), detail = code;
end
$$;

create function sluice.retry(message text, after interval default null) returns jsonb
language plpgsql
volatile
as $$
begin
    raise exception using
        errcode = 'SL003',
        message = coalesce(message, 'retry requested'),
        -- A negative wait means "as soon as the backoff allows": 0.
        detail = case when after is null then ''
                      else trim_scale(greatest(extract(epoch from after), 0))::text end;
end
$$;

-- A handler may run as a role of its own (SET LOCAL ROLE), one that cannot
-- touch sluice's tables; it still needs to reach these two functions. USAGE
-- on the schema lets it name them, and nothing else: the tables keep their
-- own privileges.
grant usage on schema sluice to public;
grant execute on function sluice.reject(text, text) to public;
grant execute on function sluice.retry(text, interval) to public;
