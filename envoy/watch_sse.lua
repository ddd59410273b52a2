-- WatchChat over REST as a standard Server-Sent Events stream, for a browser's EventSource.
--
-- The transcoder (stream_sse_style_delimited) writes one `data: {"event": {...}}` frame per event. This filter,
-- on the REST watch routes only (envoy.yaml.tmpl), adds what EventSource reads besides the data:
--   id: <seq>       the event's per-chat sequence number: the browser sends it back as Last-Event-ID when it
--                   reconnects (keep-alives and server_shutdown repeat the last seq delivered, so the id stays
--                   the last event the client has)
--   event: <kind>   message_added, status_changed, keep_alive, chat_deleted, server_shutdown, message_delta
--                   (addEventListener(kind, ...); onmessage sees only events without a kind)
-- A message_delta (include_deltas=true) gets no id: it is live text, never stored or replayed, so it must not
-- move Last-Event-ID; the browser keeps the id of the last stored event, and a reconnect replays from there
-- (the stored message the deltas add up to included).
-- and, on the request, maps a Last-Event-ID header to the after_seq query parameter. Last-Event-ID wins over an
-- after_seq in the URL: a browser reconnects to the URL it was given first (after_seq=0, say), and the header
-- is the newer word on where it got to.

local KINDS = {"message_added", "status_changed", "keep_alive", "chat_deleted", "server_shutdown", "message_delta"}
-- An int64 seq has at most 19 digits.
local MAX_SEQ_DIGITS = 19

function envoy_on_request(handle)
  local headers = handle:headers()
  local last = headers:get("last-event-id")
  if last == nil then
    return
  end
  if not string.match(last, "^%d+$") or #last > MAX_SEQ_DIGITS then
    -- Answered as JSON with reason INVALID_LAST_EVENT_ID (local_replies.py).
    handle:respond({[":status"] = "400"}, "Last-Event-ID must be the id (seq) of an event this stream sent")
    return
  end
  local path = headers:get(":path")
  local base, query = string.match(path, "^([^?]*)%??(.*)$")
  local kept = {}
  for param in string.gmatch(query, "[^&]+") do
    local name = string.match(param, "^([^=]*)")
    if name ~= "after_seq" then
      table.insert(kept, param)
    end
  end
  table.insert(kept, "after_seq=" .. last)
  headers:replace(":path", base .. "?" .. table.concat(kept, "&"))
end

-- The kind of one event's JSON: the first key of its oneof. A key is structural only where a quote follows
-- `{` or `,` (inside a JSON string a quote is always escaped), and the envelope prints seq, chat_id and time
-- first (field order), so the earliest kind key found is the event's own.
local function kind_of(json)
  local best, found = nil, nil
  for _, kind in ipairs(KINDS) do
    for _, lead in ipairs({',"', '{"'}) do
      local at = string.find(json, lead .. kind .. '":', 1, true)
      if at ~= nil and (best == nil or at < best) then
        best, found = at, kind
      end
    end
  end
  return found
end

local function framed(event)
  local json = string.match(event, "^data: (.*)$")
  if json == nil then
    return event .. "\n\n"
  end
  local out = {}
  local seq = string.match(json, '^{"event":{"seq":"(%d+)"')
  local kind = kind_of(json)
  if seq ~= nil and kind ~= "message_delta" then
    table.insert(out, "id: " .. seq .. "\n")
  end
  if kind ~= nil then
    table.insert(out, "event: " .. kind .. "\n")
  end
  table.insert(out, event .. "\n\n")
  return table.concat(out)
end

function envoy_on_response(handle)
  local content_type = handle:headers():get("content-type")
  if content_type == nil or string.find(content_type, "text/event-stream", 1, true) == nil then
    return
  end
  -- Chunks are rewritten as they stream (never buffered); an event cut between two chunks waits for its end.
  local pending = ""
  for chunk in handle:bodyChunks() do
    local text = pending .. chunk:getBytes(0, chunk:length())
    local out = {}
    local start = 1
    while true do
      local stop = string.find(text, "\n\n", start, true)
      if stop == nil then
        break
      end
      table.insert(out, framed(string.sub(text, start, stop - 1)))
      start = stop + 2
    end
    pending = string.sub(text, start)
    chunk:setBytes(table.concat(out))
  end
end
