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
