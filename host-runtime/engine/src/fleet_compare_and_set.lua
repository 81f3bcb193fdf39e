-- The fleet's compare-and-set of a peer's shared copy (KEYS[1], a hash with the fields `v`, a
-- version the writer bumps, and `b`, the history blob). Sets the copy only if its version is
-- still the one the writer read (ARGV[1], empty for "no copy") to ARGV[2], bumps the version and
-- renews the TTL to ARGV[3] milliseconds; otherwise answers with the copy that won, for the
-- writer to merge and try again. Answers {applied (1 or 0), version, blob}.
--
-- The merge itself is the engine's (policy-core's, or the component's `fleet.blob-to-share`),
-- so the script stays a few commands long: a script blocks the server while it runs. The one
-- copy of this script: tlsfallback-engine's fleet_protocol includes it; the Python and Node kits
-- read it from contract.json.
local v = redis.call('HGET', KEYS[1], 'v') or ''
if v ~= ARGV[1] then
  return {0, v, redis.call('HGET', KEYS[1], 'b') or ''}
end
local next = tostring((tonumber(v) or 0) + 1)
redis.call('HSET', KEYS[1], 'v', next, 'b', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, next, ARGV[2]}
