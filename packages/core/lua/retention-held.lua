--[[
  Retention held: which of a partition's packages Redis still holds something for, so the
  retention sweep must not delete their rows: a pending buffer entry, or report deltas (live,
  or in flight in a flush). Read-only; one call per partition (one slot on a cluster).

  KEYS[1] pending          zset  packageKey -> seq
  KEYS[2] reports          hash  n:<packageKey> -> count (live deltas)
  KEYS[3] reports:inflight hash  n:<packageKey> -> count (the set being flushed)

  ARGV[1..n] packageKeys

  Returns a list of n integers, 1 where the package is held, else 0.
]]
local out = {}
for i = 1, #ARGV do
  local k = ARGV[i]
  if redis.call('ZSCORE', KEYS[1], k)
    or redis.call('HEXISTS', KEYS[2], 'n:' .. k) == 1
    or redis.call('HEXISTS', KEYS[3], 'n:' .. k) == 1 then
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
