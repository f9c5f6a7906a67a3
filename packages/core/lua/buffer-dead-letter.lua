--[[
  Dead-letter: move entries PostgreSQL refused from pending to the dead hash, with the
  same compare-on-score rule as buffer-confirm (a re-buffered entry is left alone).

  KEYS[1] pending  zset
  KEYS[2] data     hash
  KEYS[3] dead     hash   packageKey -> dead-letter JSON (payload + error)

  ARGV[1], ARGV[2], ARGV[3]  packageKey, score as read, dead-letter JSON   (repeated)

  Returns the number of entries moved.
]]
local moved = 0
for i = 1, #ARGV, 3 do
  local key = ARGV[i]
  local score = redis.call('ZSCORE', KEYS[1], key)
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    redis.call('ZREM', KEYS[1], key)
    redis.call('HDEL', KEYS[2], key)
    redis.call('HSET', KEYS[3], key, ARGV[i + 2])
    moved = moved + 1
  end
end
return moved
