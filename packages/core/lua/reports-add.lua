--[[
  Reports add: add counted reports of packages, and record each one's latest check time, into
  the partitions' reports hashes:
    n:<packageKey> -> count, t:<packageKey> -> last seen epoch ms,
    since -> epoch ms of the oldest delta in the hash, total -> sum of counts
  Two forms, told apart by ARGV[1]. On a Redis Cluster the caller sends the add form only, one
  call per partition (one slot each); the read form spans slots and is for a single Redis.

  ARGV[1] = 0, add (report-buffer.ts: a check's packages, or the api's coalesced batches):
    KEYS[1..m]     reports hashes, one per partition
    ARGV[2..m+1]   how many groups follow for each of KEYS[1..m], in order
    ARGV[m+2..]    per group, grouped by hash in KEYS order, three values: the count (>= 1) to
                   add to each of its packages, their last seen epoch ms, and the packageKeys,
                   distinct within the call, separated by single spaces (a key holds no whitespace)
    Returns the number of reports counted (the sum of the counts).

  ARGV[1] = r > 0, read then count (result-cache.ts readCounting: the check path's only round trip
  when every package is cached). Reads r cache entries as MGET would and counts one report of
  each package, at the check's time, only if every package entry is a cached status; otherwise
  writes nothing, and the caller counts later, once its answer is sure.
    KEYS[1..p]        cache entries of the check's distinct packages
    KEYS[p+1..r]      cache entries of the check's distinct signers
    KEYS[r+1..r+m]    reports hashes of the partitions the packages fall in
    ARGV[2]           p
    ARGV[3]           the check's time, epoch ms
    ARGV[4]           length of the cache-key prefix: KEYS[i] is that prefix then the packageKey
    ARGV[5]           per package, in KEYS order, the index (1..m) of its reports hash, separated
                      by single spaces
    Returns the r values (false for a missing key), then 1 if the check was counted, else 0.
]]

-- Adds `count` to each key the iterator yields, last seen `seenText`; returns how many keys.
local function addTo(h, keys, count, seenText)
  local times, n = {}, 0
  for key in keys do
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
  return n
end

local function settle(h, total, oldestText)
  if total > 0 then
    redis.call('HSETNX', h, 'since', oldestText)
    redis.call('HINCRBY', h, 'total', total)
  end
end

local function each(list)
  local i = 0
  return function()
    i = i + 1
    return list[i]
  end
end

local r = tonumber(ARGV[1])
if r > 0 then
  local p, seenText, cut = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
  local values = redis.call('MGET', unpack(KEYS, 1, r))
  local counted = 0
  local hit = true
  for i = 1, p do
    -- The api's decodeCached accepts exactly what cache-fill writes, which starts so.
    local v = values[i]
    if not v or string.sub(v, 1, 7) ~= '{"rev":' then
      hit = false
      break
    end
  end
  if hit and p > 0 then
    local byHash, i = {}, 0
    for index in string.gmatch(ARGV[5], '%d+') do
      i = i + 1
      local h = r + tonumber(index)
      local list = byHash[h]
      if not list then
        list = {}
        byHash[h] = list
      end
      list[#list + 1] = string.sub(KEYS[i], cut + 1)
    end
    for h, list in pairs(byHash) do
      local n = addTo(KEYS[h], each(list), 1, seenText)
      settle(KEYS[h], n, seenText)
      counted = counted + n
    end
  end
  values[r + 1] = counted > 0 and 1 or 0
  return values
end

local m = #KEYS
local at = m + 2
local counted = 0
for k = 1, m do
  local h, groups = KEYS[k], tonumber(ARGV[k + 1])
  local total, oldest, oldestText = 0, nil, nil
  for _ = 1, groups do
    local count, seenText, list = tonumber(ARGV[at]), ARGV[at + 1], ARGV[at + 2]
    at = at + 3
    local seen = tonumber(seenText)
    local n = addTo(h, string.gmatch(list, '%S+'), count, seenText)
    total = total + n * count
    if n > 0 and (oldest == nil or seen < oldest) then oldest, oldestText = seen, seenText end
  end
  settle(h, total, oldestText)
  counted = counted + total
end
return counted
