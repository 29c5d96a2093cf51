-- wrk script for bench/events_bench.py: every request asks for a random real page.
--
--   wrk ... -H "Authorization: Bearer KEY" -s bench/wrk_cursors.lua URL -- PATHS_FILE [SEED]
--
-- PATHS_FILE holds one request path per line
-- (/v1/fine_tuning/jobs/<job>/events?after=<event id>&limit=20). A fixed cursor would let
-- SQLite serve the same few pages from hot cache lines; random ones spread reads over the store
-- the way many clients tailing many jobs do.

local requests = {}
local count = 0

function init(args)
   local file = args[1]
   if file == nil then
      error("usage: wrk ... -s wrk_cursors.lua URL -- PATHS_FILE [SEED]")
   end
   -- Build every request once here (wrk.headers already holds the -H headers), so the
   -- per-request work in wrk is one table lookup: wrk shares the 2 cores with the server.
   for path in io.lines(file) do
      if path ~= "" then
         count = count + 1
         requests[count] = wrk.format("GET", path)
      end
   end
   if count == 0 then
      error("no request paths in " .. file)
   end
   -- A fixed seed replays the same cursor sequence in every run, so runs differ only in timing.
   math.randomseed(tonumber(args[2] or "1"))
end

function request()
   return requests[math.random(count)]
end
