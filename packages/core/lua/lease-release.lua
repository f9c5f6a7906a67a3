--[[
  Lease release: delete the flush lease only if the caller still holds it.

  KEYS[1] lock  string  holder's random token

  ARGV[1] token

  Returns 1 released, 0 not held by this token.
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
