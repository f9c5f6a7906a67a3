--[[
  Cache fill: write cached results, each only if its key is absent or holds a lower
  rev, so a slow reader can never put back a verdict older than one already cached.

  KEYS[1..n]  cache keys
  ARGV[1]     time to live, seconds
  ARGV[1+i]   result JSON for KEYS[i]; must start with {"rev":<integer>,

  Returns the number of keys written.
]]
local written = 0
for i = 1, #KEYS do
  local value = ARGV[i + 1]
  local rev = tonumber(string.match(value, '^{"rev":(%d+)'))
  local current = redis.call('GET', KEYS[i])
  local currentRev = current and tonumber(string.match(current, '^{"rev":(%d+)'))
  if rev and (not currentRev or currentRev < rev) then
    redis.call('SET', KEYS[i], value, 'EX', ARGV[1])
    written = written + 1
  end
end
return written
