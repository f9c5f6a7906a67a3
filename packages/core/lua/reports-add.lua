--[[
  Reports add: add counted reports of packages, and record each one's latest check time. One
  call covers any number of partitions' hashes on a single Redis; on a Redis Cluster the caller
  sends one call per partition (one slot each). The api coalesces the checks answered together
  (report-coalescer.ts), so a count may be more than one, and a package appears once per call.

  KEYS[1..m]  reports hashes, one per partition:
              n:<packageKey> -> count, t:<packageKey> -> last seen epoch ms,
              since -> epoch ms of the oldest delta in the hash, total -> sum of counts

  ARGV[1..m]     how many packages follow for each of KEYS[1..m], in order
  ARGV[m+1..]    per package, grouped by hash in KEYS order, three values:
                 packageKey (distinct within the call), count (>= 1), last seen epoch ms

  Returns the number of reports counted (the sum of the counts).
]]
local m = #KEYS
local at = m + 1
local counted = 0
-- In chunks: Lua's unpack() fails beyond ~8,000 values, and a call may hold thousands of packages.
local chunk = 500
for k = 1, m do
  local h, n = KEYS[k], tonumber(ARGV[k])
  local last = at + 3 * n - 1
  local total, oldest = 0, nil
  for from = at, last, 3 * chunk do
    local times = {}
    for i = from, math.min(from + 3 * chunk - 1, last), 3 do
      local key, count, seen = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
      redis.call('HINCRBY', h, 'n:' .. key, count)
      times[#times + 1] = 't:' .. key
      times[#times + 1] = ARGV[i + 2]
      total = total + count
      if oldest == nil or seen < oldest then oldest = seen end
    end
    -- Last writer wins: the latest check to arrive; PostgreSQL keeps the greatest time anyway.
    redis.call('HSET', h, unpack(times))
  end
  if n > 0 then
    redis.call('HSETNX', h, 'since', string.format('%d', oldest))
    redis.call('HINCRBY', h, 'total', total)
  end
  counted = counted + total
  at = last + 1
end
return counted
