--[[
  Raise a recorded WAL position: store ARGV[1] only if it is past the stored one, so
  concurrent writers (several api pods recording verdict commits) can only move it forward.

  KEYS[1]  the LSN key (string, no TTL)
  ARGV[1]  LSN as 16 upper-case hex digits (the two halves of PostgreSQL's X/Y, zero-padded)

  Returns the stored LSN afterwards (16 hex digits).
]]
local current = redis.call('GET', KEYS[1])
local function before(a, b)
  -- Compare as two 32-bit halves: exact in Lua's doubles, and independent of string collation.
  local ah, bh = tonumber(string.sub(a, 1, 8), 16), tonumber(string.sub(b, 1, 8), 16)
  if ah ~= bh then return ah < bh end
  return tonumber(string.sub(a, 9, 16), 16) < tonumber(string.sub(b, 9, 16), 16)
end
if not current or string.len(current) ~= 16 or before(current, ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
  return ARGV[1]
end
return current
