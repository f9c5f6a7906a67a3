--[[
  Reports add: add counted reports of packages, and record each one's latest check time. One
  call covers any number of partitions' hashes on a single Redis; on a Redis Cluster the caller
  sends one call per partition (one slot each). The packages come in groups that share a count
  and a time, each group's keys joined by spaces in ONE argument: a check's packages are one
  group per partition (count 1, its time), and the api's coalesced batches (report-coalescer.ts)
  a few groups more, so the client encodes a handful of arguments instead of one per package.

  KEYS[1..m]  reports hashes, one per partition:
              n:<packageKey> -> count, t:<packageKey> -> last seen epoch ms,
              since -> epoch ms of the oldest delta in the hash, total -> sum of counts

  ARGV[1..m]     how many groups follow for each of KEYS[1..m], in order
  ARGV[m+1..]    per group, grouped by hash in KEYS order, three values: the count (>= 1) to add
                 to each of its packages, their last seen epoch ms, and the packageKeys, distinct
                 within the call, separated by single spaces (a key holds no whitespace)

  Returns the number of reports counted (the sum of the counts).
]]
local m = #KEYS
local at = m + 1
local counted = 0
for k = 1, m do
  local h, groups = KEYS[k], tonumber(ARGV[k])
  local total, oldest, oldestText = 0, nil, nil
  for _ = 1, groups do
    local count, seenText, list = tonumber(ARGV[at]), ARGV[at + 1], ARGV[at + 2]
    at = at + 3
    local seen = tonumber(seenText)
    local times, n = {}, 0
    for key in string.gmatch(list, '%S+') do
      redis.call('HINCRBY', h, 'n:' .. key, count)
      -- Last writer wins: the latest check to arrive; PostgreSQL keeps the greatest time anyway.
      times[#times + 1] = 't:' .. key
      times[#times + 1] = seenText
      n = n + 1
      -- In chunks: Lua's unpack() fails beyond ~8,000 values.
      if #times >= 1000 then
        redis.call('HSET', h, unpack(times))
        times = {}
      end
    end
    if #times > 0 then redis.call('HSET', h, unpack(times)) end
    total = total + n * count
    if n > 0 and (oldest == nil or seen < oldest) then oldest, oldestText = seen, seenText end
  end
  if total > 0 then
    redis.call('HSETNX', h, 'since', oldestText)
    redis.call('HINCRBY', h, 'total', total)
  end
  counted = counted + total
end
return counted
