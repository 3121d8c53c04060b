-- Inserted at the top of the algorithm blocks that divide (a closure is built only there).
-- floor(a / b) for integers a and b > 0, exact despite the rounding of the double quotient
local function fdiv(a, b)
  local q = floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end

-- ceil(a / b) for integers a and b > 0
local function cdiv(a, b)
  return -fdiv(-a, b)
end
