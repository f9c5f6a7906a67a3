--[[
  Buffer add: record the packages of one partition that are not already pending,
  atomically (data and pending are written together or not at all).

  KEYS[1] seq      string  INCR counter of the partition
  KEYS[2] pending  zset    packageKey -> seq at first buffering
  KEYS[3] data     hash    packageKey -> payload JSON

  ARGV[1]           max entries this partition may hold (its share of MAX_BUFFER_DEPTH)
  ARGV[2], ARGV[3]  packageKey, payload JSON   (repeated for every package)

  Returns {status, flag_1, ..., flag_n}
    status  0 written; -1 buffer_full: the new entries would exceed ARGV[1], nothing written
    flag_i  1 if package i was already pending (or repeats an earlier one of this call), else 0
]]
local pending, data = KEYS[2], KEYS[3]
local n = (#ARGV - 1) / 2
local flags, fresh, seen = {}, {}, {}

for i = 1, n do
  local key = ARGV[2 * i]
  if seen[key] or redis.call('ZSCORE', pending, key) then
    flags[i] = 1
  else
    flags[i] = 0
    fresh[#fresh + 1] = i
  end
  seen[key] = true
end

if #fresh > 0 then
  if redis.call('ZCARD', pending) + #fresh > tonumber(ARGV[1]) then
    return {-1}
  end
  local seq = redis.call('INCRBY', KEYS[1], #fresh) - #fresh
  -- In chunks: Lua's unpack() fails beyond ~8,000 values, and a call may hold more.
  local chunk = 500
  for from = 1, #fresh, chunk do
    local zargs, hargs = {}, {}
    for j = from, math.min(from + chunk - 1, #fresh) do
      local i = fresh[j]
      seq = seq + 1
      zargs[#zargs + 1] = seq
      zargs[#zargs + 1] = ARGV[2 * i]
      hargs[#hargs + 1] = ARGV[2 * i]
      hargs[#hargs + 1] = ARGV[2 * i + 1]
    end
    redis.call('HSET', data, unpack(hargs))
    redis.call('ZADD', pending, 'NX', unpack(zargs))
  end
end

local reply = {0}
for i = 1, n do reply[i + 1] = flags[i] end
return reply
