--[[
  Compare-and-delete after a committed flush: remove an entry (zset member and data)
  only if its score is still the one the flusher read. An entry deleted and buffered
  again after the read has a new score and is kept for the next flush.

  KEYS[1] pending  zset
  KEYS[2] data     hash

  ARGV[1], ARGV[2]  packageKey, score as read   (repeated)

  Returns the number of entries removed.
]]
local removed = 0
for i = 1, #ARGV, 2 do
  local key = ARGV[i]
  local score = redis.call('ZSCORE', KEYS[1], key)
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    redis.call('ZREM', KEYS[1], key)
    redis.call('HDEL', KEYS[2], key)
    removed = removed + 1
  end
end
return removed
