-- A pure-Lua stand-in for Redis' struct library, for fakeredis (which has none): tests only.
-- tests/redis/conftest.py puts it before the script when no redis-server binary is there.
-- It covers the only formats the script uses, big-endian unsigned ">I<n>I<n>...".
local struct = struct or (function()
  local function widths(fmt)
    local w = {}
    for n in string.gmatch(fmt, 'I(%d+)') do
      w[#w + 1] = tonumber(n)
    end
    return w
  end
  local function size(fmt)
    local total = 0
    for _, n in ipairs(widths(fmt)) do
      total = total + n
    end
    return total
  end
  local function pack(fmt, ...)
    local values, out = {...}, {}
    for i, n in ipairs(widths(fmt)) do
      local v, bytes = values[i], {}
      for j = n, 1, -1 do
        bytes[j] = string.char(v % 256)
        v = math.floor(v / 256)
      end
      out[i] = table.concat(bytes)
    end
    return table.concat(out)
  end
  local function unpack(fmt, s, pos)
    pos = pos or 1
    local values = {}
    for i, n in ipairs(widths(fmt)) do
      local v = 0
      for j = pos, pos + n - 1 do
        v = v * 256 + string.byte(s, j)
      end
      values[i] = v
      pos = pos + n
    end
    values[#values + 1] = pos
    return (table.unpack or _G.unpack)(values)
  end
  return {size = size, pack = pack, unpack = unpack}
end)()
