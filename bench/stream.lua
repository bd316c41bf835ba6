-- wrk script of bench.run (bench/loadgen.py runs it): a workload's own request stream.
--
-- Contract: wrk -t1 -c32 -d10s -s bench/stream.lua URL -- STREAM_FILE
-- STREAM_FILE (written by bench/loadgen.py from bench.workloads.stream) holds a first line
-- "N M", then N distinct raw HTTP/1.1 requests, each as a line "KIND LENGTH" (KIND 0 a read,
-- 1 a write) and LENGTH bytes, then one line of M request numbers (1-based): the seeded
-- order, Zipf keys, PutItems, batches and Query pages as the Python generator sends them.
-- request() sends them in that order, cycling; each thread starts at its own offset.
-- response() counts answers by their x-daxproxy-cache label (hit, miss, bypass, stale;
-- none: no label), and request() counts the writes sent (the proxy labels no write).
-- done() prints one line, "BENCH_RESULT " and a JSON object: requests, seconds, rps,
-- latency percentiles over all answers in microseconds (wrk's histogram cannot tell a hit
-- from a miss), the counts per label, the writes sent and wrk's error counts.

local threads = {}
local distinct, kinds, order = {}, {}, {}
local position = 0
-- Globals, so that done() can read them from each thread (thread:get).
writes = 0
counts = { hit = 0, miss = 0, bypass = 0, stale = 0, none = 0 }

function setup(thread)
   thread:set("id", #threads)
   table.insert(threads, thread)
end

function init(args)
   local file = assert(io.open(args[1], "rb"))
   local data = file:read("*a")
   file:close()
   local line_end = data:find("\n", 1, true)
   local n = tonumber(data:sub(1, line_end - 1):match("^(%d+) %d+$"))
   local at = line_end + 1
   for i = 1, n do
      line_end = data:find("\n", at, true)
      local kind, length = data:sub(at, line_end - 1):match("^(%d+) (%d+)$")
      length = tonumber(length)
      kinds[i] = tonumber(kind)
      distinct[i] = data:sub(line_end + 1, line_end + length)
      at = line_end + 1 + length
   end
   for number in data:sub(at):gmatch("%d+") do
      order[#order + 1] = tonumber(number)
   end
   position = ((id or 0) * 7919) % #order
end

function request()
   position = position + 1
   if position > #order then
      position = 1
   end
   local i = order[position]
   if kinds[i] == 1 then
      writes = writes + 1
   end
   return distinct[i]
end

function response(status, headers, body)
   local label = headers["x-daxproxy-cache"] or headers["X-Daxproxy-Cache"]
   if label == nil or counts[label] == nil then
      label = "none"
   end
   counts[label] = counts[label] + 1
end

function done(summary, latency, requests)
   local total = { hit = 0, miss = 0, bypass = 0, stale = 0, none = 0, write = 0 }
   for _, thread in ipairs(threads) do
      for name, _ in pairs(total) do
         if name == "write" then
            total.write = total.write + (thread:get("writes") or 0)
         else
            local c = thread:get("counts")
            total[name] = total[name] + ((c and c[name]) or 0)
         end
      end
   end
   local seconds = summary.duration / 1e6
   local errors = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests": %d, "seconds": %.6f, "rps": %.2f, "bytes": %d, '
         .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "p999_us": %d, '
         .. '"mean_us": %.1f, "max_us": %d, '
         .. '"labels": {"hit": %d, "miss": %d, "bypass": %d, "stale": %d, "none": %d}, '
         .. '"writes_sent": %d, '
         .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
      summary.requests, seconds, summary.requests / seconds, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.mean, latency.max,
      total.hit, total.miss, total.bypass, total.stale, total.none, total.write,
      errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
