--[[
  Buffer read: the next batch of pending entries of one partition, with their data,
  as one consistent snapshot (no entry is half-read).

  KEYS[1] pending  zset
  KEYS[2] data     hash

  ARGV[1] lower score bound, exclusive ('(' prefix added here), or '-inf'
  ARGV[2] upper score bound, inclusive (the seq snapshot taken when the flush began)
  ARGV[3] max entries

  Returns {key_1, score_1, payload_1, ..., key_n, score_n, payload_n} in score order;
  payload is '' if the data hash has no field (never expected: add writes both).
]]
local min = ARGV[1]
if min ~= '-inf' then min = '(' .. min end
local rows = redis.call('ZRANGEBYSCORE', KEYS[1], min, ARGV[2], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
if #rows == 0 then return {} end

local keys = {}
for i = 1, #rows, 2 do keys[#keys + 1] = rows[i] end

-- HMGET in chunks: Lua's unpack() fails beyond ~8,000 values, and a batch may hold more.
local out = {}
local chunk = 1000
for from = 1, #keys, chunk do
  local to = math.min(from + chunk - 1, #keys)
  local payloads = redis.call('HMGET', KEYS[2], unpack(keys, from, to))
  for i = from, to do
    out[#out + 1] = keys[i]
    out[#out + 1] = rows[2 * i]
    out[#out + 1] = payloads[i - from + 1] or ''
  end
end
return out
