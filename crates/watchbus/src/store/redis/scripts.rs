//! The Lua scripts: every change to the log is one script, so it is atomic.
//!
//! Every script takes the same three keys (the meta hash, the log stream,
//! the control stream; append also its token) and starts with the same
//! prelude:
//!
//! - `load` reads the meta hash, or, when Redis holds none (first use, or a
//!   Redis that came back empty) or holds a log behind what the calling node
//!   has seen (`EPOCH:HEAD`: a restored backup, a lagging replica), begins a
//!   new life of the log, so no id is ever handed out twice: a new epoch
//!   from Redis's own clock (`TIME`, one clock for every node, and above
//!   every epoch the calling node has seen), the old stream deleted, and an
//!   `epoch` entry on the control stream so every node's reader notices.
//! - `evict` applies retention from the old end: count, bytes and age,
//!   recording the newest evicted seq and its time (the exact 410 edge).
//!   It walks only the entries it evicts, so an append that evicts one event
//!   reads one entry.
//!
//! Redis runs a script alone and, with the `#!lua` shebang (Redis 7), refuses
//! the append before it runs when memory is full (over `maxmemory`): a
//! script either runs whole or not at all. The other scripts are flagged
//! `allow-oom`: they read, or free (age retention, reset), and write at most
//! a few bytes of state, so that a full Redis can still be read, resumed
//! from and emptied. Nothing in them can fail half way: the only writes are
//! `XADD` with ids above every id in the stream, `HSET`, `SET`, `XTRIM` and
//! `DEL`.
//!
//! Numbers are formatted with `%d`: Lua 5.1 numbers are doubles, exact up to
//! 2^53, far above any seq or millisecond time.

/// The meta hash's fields, in the order `load` reads them.
const PRELUDE: &str = r#"
local meta, log, ctl = KEYS[1], KEYS[2], KEYS[3]
local FIELDS = {'epoch', 'head', 'through', 'through_time', 'started', 'last_time', 'published', 'evicted', 'bytes', 'generation'}

local function fmt(n)
  return string.format('%d', n)
end

local function save(st)
  local args = {}
  for _, name in ipairs(FIELDS) do
    args[#args + 1] = name
    args[#args + 1] = fmt(st[name])
  end
  redis.call('HSET', meta, unpack(args))
end

local function signal(kind, st)
  return redis.call('XADD', ctl, 'MAXLEN', '~', '64', '*', 'kind', kind, 'epoch', fmt(st.epoch), 'head', fmt(st.head), 'generation', fmt(st.generation))
end

-- The log's state; a new life of the log when Redis holds none, or holds
-- a log older than the calling node has seen (`known` is `EPOCH:HEAD`): a
-- Redis restored from a backup, or a replica that lagged, would otherwise
-- hand out seen ids again, to other events.
local function load(now, known)
  local known_epoch = tonumber(string.match(known, '^(%d+)')) or 0
  local known_head = tonumber(string.match(known, ':(%d+)$')) or 0
  local values = redis.call('HMGET', meta, unpack(FIELDS))
  local st = {}
  if values[1] then
    for i, name in ipairs(FIELDS) do
      st[name] = tonumber(values[i]) or 0
    end
    if st.epoch > known_epoch or (st.epoch == known_epoch and st.head >= known_head) then
      return st
    end
  end
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  st = {epoch = math.max(ms, known_epoch + 1), head = 0, through = 0, through_time = -1, started = now, last_time = now,
        published = 0, evicted = 0, bytes = 0, generation = 0}
  redis.call('DEL', log)
  save(st)
  signal('epoch', st)
  return st
end

-- Evicts from the old end while over a bound. Entries up to `stream_head`
-- are in the stream; those after it are `pending` ({time, bytes}), not yet
-- written. Returns true when something was evicted.
local function evict(st, stream_head, pending, max_events, max_bytes, cutoff)
  local before = st.through
  local chunk, ci = nil, 1
  while st.head > st.through do
    local excess = max_events >= 0 and st.head - st.through - max_events or 0
    -- Count and bytes are known without reading: read the oldest entries
    -- only when a bound is crossed, or for the age of the oldest.
    if excess <= 0 and not (max_bytes >= 0 and st.bytes > max_bytes) and cutoff < 0 then
      break
    end
    local seq = st.through + 1
    local ms, b
    if seq > stream_head then
      local p = pending[seq - stream_head]
      ms, b = p[1], p[2]
    else
      if chunk == nil or ci > #chunk then
        local count = math.min(math.max(excess, 1), 128)
        chunk = redis.call('XRANGE', log, fmt(seq) .. '-0', fmt(stream_head) .. '-0', 'COUNT', count)
        ci = 1
      end
      local e = chunk[ci]
      if e and tonumber(string.match(e[1], '^(%d+)')) == seq then
        -- `ms` and `b` are always the first two fields.
        ms, b = tonumber(e[2][2]), tonumber(e[2][4])
        ci = ci + 1
      else
        -- Not in the stream (removed by hand): nothing to keep.
        ms, b = math.max(st.through_time, 0), 0
      end
    end
    local over = (max_events >= 0 and st.head - st.through > max_events)
      or (max_bytes >= 0 and st.bytes > max_bytes)
      or (cutoff >= 0 and ms < cutoff)
    if not over then
      break
    end
    st.through = seq
    st.through_time = ms
    st.bytes = math.max(st.bytes - b, 0)
    st.evicted = st.evicted + 1
  end
  return st.through > before
end

-- Age retention outside an append (reads and the sweeper).
local function expire(st, cutoff)
  if cutoff >= 0 and evict(st, st.head, {}, -1, -1, cutoff) then
    redis.call('XTRIM', log, 'MINID', fmt(st.through + 1) .. '-0')
    save(st)
  end
end
"#;

/// Appends a batch. KEYS[4]: this append's token; KEYS[5], if given: the
/// publisher's idempotency key. ARGV: now, max_events, max_bytes (-1:
/// none), cutoff (-1: none), known `EPOCH:HEAD`, n, the token's time to
/// live (ms), the request's digest and the idempotency window (ms) (both
/// empty without KEYS[5]), then per draft: target kind (`k`|`p`), target,
/// type (empty: none), data, retained bytes. Returns `{epoch, first seq,
/// time, outcome}`: outcome 0 appended, 1 the idempotency key's earlier
/// append (nothing appended), 2 the key names another digest (nothing
/// appended, the rest 0).
///
/// The token makes a retry of the same append (after a connection broke
/// with the answer on its way) return the first run's answer instead of
/// storing the batch twice; the idempotency key does the same for a
/// publisher's retry, from any node, within its window.
const APPEND: &str = r#"
local token, once = KEYS[4], KEYS[5]
local done = redis.call('GET', token)
if done then
  local epoch, first, time = string.match(done, '^(%d+) (%d+) (%d+)$')
  return {tonumber(epoch), tonumber(first), tonumber(time), 0}
end
local digest, window = ARGV[8], ARGV[9]
if once then
  local seen = redis.call('GET', once)
  if seen then
    local seen_digest, epoch, first, time = string.match(seen, '^(%x+) (%d+) (%d+) (%d+)$')
    if seen_digest ~= digest then
      return {0, 0, 0, 2}
    end
    return {tonumber(epoch), tonumber(first), tonumber(time), 1}
  end
end
local now, max_events, max_bytes, cutoff, known = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local n, ttl = tonumber(ARGV[6]), tonumber(ARGV[7])
local st = load(now, known)
local stream_head = st.head
local time = math.max(now, st.last_time)
st.last_time = time
local pending = {}
for i = 1, n do
  local b = tonumber(ARGV[9 + (i - 1) * 5 + 5])
  pending[i] = {time, b}
  st.bytes = st.bytes + b
end
st.head = stream_head + n
st.published = st.published + n
evict(st, stream_head, pending, max_events, max_bytes, cutoff)
for i = 1, n do
  local o = 9 + (i - 1) * 5
  local fields = {'ms', fmt(time), 'b', fmt(pending[i][2]), 'ep', fmt(st.epoch), 'ev', fmt(st.through), ARGV[o + 1], ARGV[o + 2]}
  if ARGV[o + 3] ~= '' then
    fields[#fields + 1] = 't'
    fields[#fields + 1] = ARGV[o + 3]
  end
  fields[#fields + 1] = 'd'
  fields[#fields + 1] = ARGV[o + 4]
  redis.call('XADD', log, fmt(stream_head + i) .. '-0', unpack(fields))
end
-- Entries of this batch that retention already evicted stay in the stream
-- until the next trim, so every node's reader still sees them live.
redis.call('XTRIM', log, 'MINID', fmt(math.min(st.through, stream_head) + 1) .. '-0')
save(st)
local answer = fmt(st.epoch) .. ' ' .. fmt(stream_head + 1) .. ' ' .. fmt(time)
redis.call('SET', token, answer, 'PX', fmt(ttl))
if once then
  redis.call('SET', once, digest .. ' ' .. answer, 'PX', window)
end
return {st.epoch, stream_head + 1, time, 0}
"#;

/// The log's state, after age retention. ARGV: now, cutoff, known `EPOCH:HEAD`,
/// seek time (-1: none), `1` for the oldest retained event's time. Returns `{epoch, head, through, through_time,
/// started, published, evicted, generation, seek code (0 ok, 1 gone),
/// seek seq, last control entry id, first seq in the stream (0: empty),
/// time of the oldest retained event (-1: none, or not asked for)}`.
const STATE: &str = r#"
local now, cutoff, known, seek = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local want_oldest_time = ARGV[5] == '1'
local st = load(now, known)
expire(st, cutoff)
local seek_code, seek_seq = 0, 0
if seek >= 0 then
  if st.through_time >= seek then
    seek_code = 1
  else
    -- The first retained seq whose time is >= seek (times never decrease).
    local lo, hi = st.through + 1, st.head + 1
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      local e = redis.call('XRANGE', log, fmt(mid) .. '-0', '+', 'COUNT', 1)[1]
      if e and tonumber(e[2][2]) < seek then
        lo = mid + 1
      else
        hi = mid
      end
    end
    seek_seq = lo - 1
  end
end
local last = redis.call('XREVRANGE', ctl, '+', '-', 'COUNT', 1)[1]
local first = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)[1]
-- The stream may still hold evicted entries until its next trim.
local oldest_time = -1
if want_oldest_time and st.head > st.through then
  local e = redis.call('XRANGE', log, fmt(st.through + 1) .. '-0', '+', 'COUNT', 1)[1]
  if e then oldest_time = tonumber(e[2][2]) end
end
return {st.epoch, st.head, st.through, st.through_time, st.started, st.published, st.evicted, st.generation,
        seek_code, seek_seq, last and last[1] or '0-0', first and tonumber(string.match(first[1], '^(%d+)')) or 0,
        oldest_time}
"#;

/// Reads after a position, after age retention. ARGV: now, cutoff, known
/// epoch, after epoch, after seq, count. Returns `{code (0 ok, 1 gone,
/// 2 unknown id), epoch, head, through, entries}`.
const READ: &str = r#"
local now, cutoff, known = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local after_epoch, after_seq, count = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local st = load(now, known)
expire(st, cutoff)
local code = 0
if after_epoch < st.epoch or (after_epoch == st.epoch and after_seq < st.through) then
  code = 1
elseif after_epoch > st.epoch or after_seq > st.head then
  code = 2
end
local entries = {}
if code == 0 and after_seq < st.head then
  entries = redis.call('XRANGE', log, fmt(after_seq + 1) .. '-0', fmt(st.head) .. '-0', 'COUNT', count)
end
return {code, st.epoch, st.head, st.through, entries}
"#;

/// Evicts everything, keeps ids increasing, zeroes the totals and tells
/// every node. ARGV: now, known `EPOCH:HEAD`. Returns `{epoch, head, generation}`.
const RESET: &str = r#"
local now, known = tonumber(ARGV[1]), ARGV[2]
local st = load(now, known)
if st.head > st.through then
  st.through = st.head
  st.through_time = st.last_time
end
st.published = 0
st.evicted = 0
st.bytes = 0
st.generation = st.generation + 1
redis.call('DEL', log)
save(st)
signal('reset', st)
return {st.epoch, st.head, st.generation}
"#;

/// The scripts, hashed once; `invoke_async` sends `EVALSHA` and falls back
/// to loading the script when Redis does not know it (after a restart).
#[derive(Debug)]
pub(super) struct Scripts {
    pub(super) append: ::redis::Script,
    pub(super) state: ::redis::Script,
    pub(super) read: ::redis::Script,
    pub(super) reset: ::redis::Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        let script =
            |shebang: &str, body: &str| ::redis::Script::new(&format!("{shebang}{PRELUDE}{body}"));
        // Refused when Redis is full: an append is what fills it.
        let grows = |body| script("#!lua", body);
        // Run when Redis is full: reading, evicting and resetting are how
        // an operator sees and empties a full log.
        let frees = |body| script("#!lua flags=allow-oom", body);
        Self {
            append: grows(APPEND),
            state: frees(STATE),
            read: frees(READ),
            reset: frees(RESET),
        }
    }
}
