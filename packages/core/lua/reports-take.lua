--[[
  Reports take: hand the flusher the partition's delta set to apply, with its flush id.
  An in-flight set left by a flusher that crashed (or one another flusher is applying) is
  handed out again with its id, so that the PostgreSQL ledger can tell it was applied; only
  when there is none are the live deltas moved (RENAME, O(1)) into a new in-flight set
  under the next flush id. Checks then add to a fresh live hash.

  KEYS[1] reports       hash    live deltas
  KEYS[2] inflight      hash    the set being flushed
  KEYS[3] flush ids     hash    epoch -> random token set once, seq -> last flush id (only grows)
  KEYS[4] inflight id   string  "<epoch>:<seq>:<tag>" of the in-flight set

  ARGV[1] a fresh random token: becomes the epoch if the partition has none yet (first use,
          or a Redis that came back empty), so ids restarting at 1 never match ledger rows
          of an earlier epoch
  ARGV[2] a fresh random tag for a new set (rows inserted with its counts carry it)

  Returns "<epoch>:<seq>:<tag>" of the set to flush, or false when there is nothing to flush.
]]
local current = redis.call('GET', KEYS[4])
if current then
  return current
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return false
end
redis.call('HSETNX', KEYS[3], 'epoch', ARGV[1])
local epoch = redis.call('HGET', KEYS[3], 'epoch')
local id = redis.call('HINCRBY', KEYS[3], 'seq', 1)
redis.call('RENAME', KEYS[1], KEYS[2])
local tag = epoch .. ':' .. id .. ':' .. ARGV[2]
redis.call('SET', KEYS[4], tag)
return tag
