-- wrk script for the benchmark (bench/passthrough.py runs it), for GetItem and BatchGetItem.
--
-- Contract: every request is the POST that the script arguments describe, the body first
-- and then one "Name: value" argument per header:
--   wrk -t1 -c32 -d10s -s bench/getitem.lua URL -- BODY "Name: value" ...
-- done() prints one line, "BENCH_RESULT " and a JSON object: requests, seconds, rps,
-- latency percentiles and mean/max in microseconds, and the error counts. Non-2xx answers
-- are counted by wrk itself as errors_status; no response() hook, which would slow wrk.

function init(args)
   wrk.method = "POST"
   wrk.path = "/"
   wrk.body = args[1]
   for i = 2, #args do
      local name, value = args[i]:match("^([^:]+):%s*(.*)$")
      if name == nil then
         error("bad header argument: " .. args[i])
      end
      wrk.headers[name] = value
   end
end

function done(summary, latency, requests)
   local seconds = summary.duration / 1e6
   local errors = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests": %d, "seconds": %.6f, "rps": %.2f, "bytes": %d, '
         .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "p999_us": %d, '
         .. '"mean_us": %.1f, "max_us": %d, '
         .. '"errors_connect": %d, "errors_read": %d, "errors_write": %d, '
         .. '"errors_status": %d, "errors_timeout": %d}\n',
      summary.requests, seconds, summary.requests / seconds, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.mean, latency.max,
      errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
