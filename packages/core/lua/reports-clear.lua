--[[
  Reports clear: after the flush transaction that applied (or found already applied) a delta
  set has committed, drop the in-flight set, only if it is still the one with that flush id
  (compare-and-delete: a slower second flusher never drops a newer set).

  KEYS[1] inflight      hash
  KEYS[2] inflight id   string

  ARGV[1] "<epoch>:<seq>:<tag>" as taken

  Returns 1 dropped, 0 not the in-flight set any more.
]]
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0
