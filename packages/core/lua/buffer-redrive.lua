--[[
  Redrive: put dead-lettered entries back into the buffer with their original payload
  (so the original first-seen time survives), as buffer-add would.

  KEYS[1] seq      string
  KEYS[2] pending  zset
  KEYS[3] data     hash
  KEYS[4] dead     hash

  ARGV[1], ARGV[2]  packageKey, original payload JSON   (repeated)

  Returns the number of entries re-buffered (an entry already pending is only removed from dead).
]]
local moved = 0
for i = 1, #ARGV, 2 do
  local key = ARGV[i]
  if redis.call('HDEL', KEYS[4], key) == 1 and not redis.call('ZSCORE', KEYS[2], key) then
    redis.call('HSET', KEYS[3], key, ARGV[i + 1])
    redis.call('ZADD', KEYS[2], 'NX', redis.call('INCR', KEYS[1]), key)
    moved = moved + 1
  end
end
return moved
