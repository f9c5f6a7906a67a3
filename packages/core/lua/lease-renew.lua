--[[
  Lease renew: extend the flush lease only if the caller still holds it.

  KEYS[1] lock  string  holder's random token

  ARGV[1] token
  ARGV[2] new time to live, ms

  Returns 1 renewed, 0 not held by this token.
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
