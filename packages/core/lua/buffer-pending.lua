--[[
  Buffer pending: for each package of one partition, its payload if it is pending, so the
  api can answer a package buffered moments ago without asking PostgreSQL. Read-only.

  KEYS[1] pending  zset    packageKey -> seq at first buffering
  KEYS[2] data     hash    packageKey -> payload JSON

  ARGV[1..n]  packageKeys

  Returns {payload_1, ..., payload_n}: the payload JSON of each pending package, false (a nil
  reply) for one not pending. A pending member without data (never written so: buffer-add
  writes both) answers false, so the caller asks PostgreSQL as for any other miss.
]]
local reply = {}
for i = 1, #ARGV do
  local payload = false
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    payload = redis.call('HGET', KEYS[2], ARGV[i]) or false
  end
  reply[i] = payload
end
return reply
