--[[
  Reports add: count one report of each package, for one check request answered 200 (the
  caller passes each package once), and record its time as last seen. One call covers any
  number of partitions' hashes on a single Redis; on a Redis Cluster the caller sends one call
  per partition (one slot each).

  KEYS[1..m]  reports hashes, one per partition:
              n:<packageKey> -> count, t:<packageKey> -> last seen epoch ms,
              since -> epoch ms of the oldest delta in the hash, total -> sum of counts

  ARGV[1]        the check's time, epoch ms (api clock)
  ARGV[2..m+1]   how many packageKeys follow for each of KEYS[1..m], in order
  ARGV[m+2..]    the packageKeys, distinct, grouped by hash in KEYS order

  Returns the number of packages counted.
]]
local now, m = ARGV[1], #KEYS
local at = m + 2
-- In chunks: Lua's unpack() fails beyond ~8,000 values, and a call may hold 1,000 packages.
local chunk = 500
for k = 1, m do
  local h, n = KEYS[k], tonumber(ARGV[k + 1])
  local last = at + n - 1
  for from = at, last, chunk do
    local times = {}
    for i = from, math.min(from + chunk - 1, last) do
      redis.call('HINCRBY', h, 'n:' .. ARGV[i], 1)
      times[#times + 1] = 't:' .. ARGV[i]
      times[#times + 1] = now
    end
    -- Last writer wins: the latest check to arrive; PostgreSQL keeps the greatest time anyway.
    redis.call('HSET', h, unpack(times))
  end
  if n > 0 then
    redis.call('HSETNX', h, 'since', now)
    redis.call('HINCRBY', h, 'total', n)
  end
  at = last + 1
end
return at - m - 2
