//! The Lua scripts of the Redis backend, each a step that touches several keys of one Cluster
//! slot at once, and [`RedisStore::eval`], which runs them by `EVALSHA`.

use redis::{ErrorKind, FromRedisValue, ToRedisArgs};

use super::conn::store_error;
use super::RedisStore;
use crate::store::StoreError;

/// `INCR`, and `PEXPIRE` when the key has no expiry yet (the first increment of a window).
const INCR_WINDOW: &str = r"
local n = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n";
/// Replace the value of KEYS[1] with ARGV[2] if it is ARGV[1].
const COMPARE_AND_SET: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end
return 0";
/// Replace the value of KEYS[1] with ARGV[2] if it is still ARGV[1] (the bytes a change was
/// computed from), expiring at Unix milliseconds ARGV[3] when that is not empty, else never.
const COMPARE_AND_REPLACE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == '' then redis.call('SET', KEYS[1], ARGV[2])
else redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3]) end
return 1";
/// Delete KEYS[1] if its value is ARGV[1].
const COMPARE_AND_DELETE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";
/// Add key ARGV[1] to the user's set KEYS[1] and claim its name ARGV[2] in KEYS[2], taking
/// over the entry only if it is free, already ours, or the invalid holder ARGV[3]. Returns ''
/// on success, else the id holding the name.
const KEY_ATTACH: &str = r"
if ARGV[2] ~= '' then
  local cur = redis.call('HGET', KEYS[2], ARGV[2])
  if cur and cur ~= ARGV[1] and cur ~= ARGV[3] then return cur end
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
end
redis.call('SADD', KEYS[1], ARGV[1])
return ''";
/// Remove key ARGV[1] from the user's set KEYS[1], and its name ARGV[2] from KEYS[2] if it
/// still points at it.
const KEY_DETACH: &str = r"
redis.call('SREM', KEYS[1], ARGV[1])
if ARGV[2] ~= '' and redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then
  redis.call('HDEL', KEYS[2], ARGV[2])
end
return 1";
/// Remove the key ids ARGV from the user's set KEYS[1], and every name in KEYS[2] that points
/// at one of them (ids of keys stored meanwhile stay).
const KEYS_DETACH: &str = r"
local gone = {}
for _, id in ipairs(ARGV) do
  gone[id] = true
  redis.call('SREM', KEYS[1], id)
end
local names = redis.call('HGETALL', KEYS[2])
for i = 1, #names, 2 do
  if gone[names[i + 1]] then redis.call('HDEL', KEYS[2], names[i]) end
end
return 1";
/// Write the membership KEYS[1] = ARGV[1] and add org ARGV[2] to the user's set KEYS[2].
const MEMBER_PUT: &str = r"
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
return 1";
/// Delete the membership KEYS[1] and org ARGV[1] from the user's set KEYS[2].
const MEMBER_DELETE: &str = r"
local n = redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return n";
/// What a key id resolves to, in one run: the key record KEYS[1] and, through the user id in
/// it, that user's record and memberships, whose names are ARGV[1] .. user id .. ARGV[2] ..
/// `user`, `orgs`, `member:<org id>`. Those keys cannot be declared (the id is in the record),
/// which a single Redis allows and a Cluster does not: see `session.rs`. The id is found by
/// pattern, not by decoding the JSON (which took most of the script's time): in serde_json's
/// output `"user_id":"` can only be the field's own name, since a quote inside a string is
/// escaped, and the caller checks the id against the record it decodes. Returns {} when there
/// is no key; {key} when no user id is found in it; else {key, user id, user or '', then each
/// organization id followed by its membership or ''}.
const SESSION: &str = r#"
local key = redis.call('GET', KEYS[1])
if not key then return {} end
local user = string.match(key, '"user_id":"([%x-]+)"')
if not user then return {key} end
local u = ARGV[1] .. user .. ARGV[2]
local out = {key, user, redis.call('GET', u .. 'user') or ''}
for _, org in ipairs(redis.call('SMEMBERS', u .. 'orgs')) do
  out[#out + 1] = org
  out[#out + 1] = redis.call('GET', u .. 'member:' .. org) or ''
end
return out"#;
/// A user's side of a session, in the user's slot: the user record KEYS[1] or '', then each
/// organization id of the set KEYS[2] followed by its membership ARGV[1] .. org id, or ''.
const SESSION_USER: &str = r"
local out = {redis.call('GET', KEYS[1]) or ''}
for _, org in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  out[#out + 1] = org
  out[#out + 1] = redis.call('GET', ARGV[1] .. org) or ''
end
return out";

/// Move one user's directory entry (see `directory.rs`), if the user's entry in the hash
/// KEYS[1] is still ARGV[2] ('' for none): remove the old entry ARGV[4] from the ordered set
/// KEYS[2] and from the ARGV[3] tag sets that follow, then, unless the new value ARGV[5] is ''
/// (the user is gone), add the new entry ARGV[6] to KEYS[2] and to the remaining tag sets and
/// store ARGV[5] for user ARGV[1]. Returns 0 when the entry changed meanwhile.
const DIRECTORY_PUT: &str = r"
local cur = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if cur ~= ARGV[2] then return 0 end
local nold = tonumber(ARGV[3])
if ARGV[4] ~= '' then
  redis.call('ZREM', KEYS[2], ARGV[4])
  for i = 3, 2 + nold do redis.call('ZREM', KEYS[i], ARGV[4]) end
end
if ARGV[5] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
redis.call('ZADD', KEYS[2], 0, ARGV[6])
for i = 3 + nold, #KEYS do redis.call('ZADD', KEYS[i], 0, ARGV[6]) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[5])
return 1";
/// One directory query: the entries after ARGV[1] (a `ZRANGE … BYLEX` bound) of the ordered set
/// KEYS[1], or of the intersection of the filter groups. ARGV[5..] are group sizes; the tag
/// sets of each group follow the scratch keys KEYS[2..4] in order; a group selects the union
/// of its sets. The group with the fewest entries is unioned first (KEYS[2]); each other group
/// is applied as the union of its sets' intersections with that (KEYS[3], KEYS[4]), so the
/// work follows the smallest group, never a large union. Scratch keys are deleted before
/// returning. With ARGV[4] = '1' returns every entry after the bound; otherwise their count,
/// then the page of ARGV[3] entries (-1: all) from offset ARGV[2].
const DIRECTORY_QUERY: &str = r"
local src = KEYS[1]
local ngroups = #ARGV - 4
if ngroups == 1 and tonumber(ARGV[5]) == 1 then
  src = KEYS[5]
elseif ngroups > 0 then
  local groups = {}
  local k = 5
  for g = 1, ngroups do
    local n = tonumber(ARGV[4 + g])
    local sets, size = {}, 0
    for i = k, k + n - 1 do
      sets[#sets + 1] = KEYS[i]
      size = size + redis.call('ZCARD', KEYS[i])
    end
    groups[g] = {sets = sets, size = size}
    k = k + n
  end
  table.sort(groups, function(a, b) return a.size < b.size end)
  redis.call('ZUNIONSTORE', KEYS[2], #groups[1].sets, unpack(groups[1].sets))
  for g = 2, #groups do
    redis.call('DEL', KEYS[4])
    for _, set in ipairs(groups[g].sets) do
      redis.call('ZINTERSTORE', KEYS[3], 2, KEYS[2], set)
      redis.call('ZUNIONSTORE', KEYS[4], 2, KEYS[4], KEYS[3])
    end
    if redis.call('EXISTS', KEYS[4]) == 1 then
      redis.call('RENAME', KEYS[4], KEYS[2])
    else
      redis.call('DEL', KEYS[2])
    end
  end
  src = KEYS[2]
end
local out = {}
local entries
if ARGV[4] == '1' then
  entries = redis.call('ZRANGE', src, ARGV[1], '+', 'BYLEX')
else
  out[1] = redis.call('ZLEXCOUNT', src, ARGV[1], '+')
  entries = redis.call('ZRANGE', src, ARGV[1], '+', 'BYLEX', 'LIMIT', ARGV[2], ARGV[3])
end
for _, e in ipairs(entries) do out[#out + 1] = e end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
return out";

/// The Lua scripts with their SHA-1, for `EVALSHA`.
pub(super) struct Scripts {
    pub(super) incr_window: Script,
    pub(super) compare_and_set: Script,
    pub(super) compare_and_replace: Script,
    pub(super) compare_and_delete: Script,
    pub(super) key_attach: Script,
    pub(super) key_detach: Script,
    pub(super) keys_detach: Script,
    pub(super) member_put: Script,
    pub(super) member_delete: Script,
    pub(super) directory_put: Script,
    pub(super) directory_query: Script,
    pub(super) session: Script,
    pub(super) session_user: Script,
}

pub(super) struct Script {
    body: &'static str,
    sha: String,
}

// === impl RedisStore ===

impl RedisStore {
    /// Runs a script by `EVALSHA`, loading it with `EVAL` when the server does not know it.
    pub(super) async fn eval<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[impl ToRedisArgs],
    ) -> Result<T, StoreError> {
        let build = |verb: &str, first: &str| {
            let mut cmd = redis::cmd(verb);
            cmd.arg(first).arg(keys.len()).arg(keys).arg(args);
            cmd
        };
        match self.attempt(&build("EVALSHA", &script.sha)).await? {
            Err(e) if e.kind() == ErrorKind::NoScriptError => {
                self.query(&build("EVAL", script.body)).await
            }
            answer => answer.map_err(store_error),
        }
    }
}

// === impl Scripts ===

impl Scripts {
    pub(super) fn new() -> Scripts {
        Scripts {
            incr_window: Script::new(INCR_WINDOW),
            compare_and_set: Script::new(COMPARE_AND_SET),
            compare_and_replace: Script::new(COMPARE_AND_REPLACE),
            compare_and_delete: Script::new(COMPARE_AND_DELETE),
            key_attach: Script::new(KEY_ATTACH),
            key_detach: Script::new(KEY_DETACH),
            keys_detach: Script::new(KEYS_DETACH),
            member_put: Script::new(MEMBER_PUT),
            member_delete: Script::new(MEMBER_DELETE),
            directory_put: Script::new(DIRECTORY_PUT),
            directory_query: Script::new(DIRECTORY_QUERY),
            session: Script::new(SESSION),
            session_user: Script::new(SESSION_USER),
        }
    }
}

impl Script {
    fn new(body: &'static str) -> Script {
        Script {
            body,
            sha: redis::Script::new(body).get_hash().to_owned(),
        }
    }
}
