-- The counts a window's debt carries into `window` (charge.lua writes a debt as
-- "d<window>:<count>" for a fixed window, "d<window>:<prev>:<count>" for a sliding one):
-- the mirror of _carried in ratelimit/algorithms/fixed_window.py and sliding_window.py, the
-- count above the limit carried on, limit a window. Put in place of "-- @include carried.lua"
-- lines. Reads state, window, limit; sets prev and curr (untouched when state is no debt).
do
  local w, p, c = string.match(state, '^d(%d+):(%d+):(%d+)$')
  if not w then
    w, c = string.match(state, '^d(%d+):(%d+)$')
    p = 0
  end
  if w then
    local ahead = window - w
    if ahead <= 0 then
      prev, curr = tonumber(p), tonumber(c)
    else
      prev, curr = c - (ahead - 1) * limit, c - ahead * limit
      if prev > limit then
        prev = limit
      elseif prev < 0 then
        prev = 0
      end
      if curr < 0 then
        curr = 0
      end
    end
  end
end
