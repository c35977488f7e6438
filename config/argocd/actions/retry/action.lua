-- Retry: restart a rolled-back rollout at its first step. Sets
-- rollouts.modelrollout.io/retry to a new token.

local function backendString(b)
  local kind = b.kind
  if kind == nil or kind == "" then
    kind = "Service"
  end
  local s = kind .. "/" .. b.name
  if b.port ~= nil then
    s = s .. ":" .. tostring(b.port)
  end
  return s
end

local function effectivePhase()
  local spec = obj.spec or {}
  if spec.canary == nil then
    return "Idle"
  end
  local status = obj.status or {}
  local revision = backendString(spec.stable) .. " -> " .. backendString(spec.canary)
  if status.phase == nil or status.phase == "" or status.revision ~= revision then
    return "Waiting"
  end
  return status.phase
end

local os = require("os")

-- token returns a fresh request token: the UTC time, RFC 3339, made unique
-- against the values the controller may already have handled.
local function token(...)
  local base = os.date("!%Y-%m-%dT%H:%M:%SZ")
  local used = {...}
  local candidate = base
  local n = 1
  local taken = true
  while taken do
    taken = false
    for i = 1, select("#", ...) do
      if used[i] == candidate then
        taken = true
      end
    end
    if taken then
      n = n + 1
      candidate = base .. "-" .. n
    end
  end
  return candidate
end

local phase = effectivePhase()
local status = obj.status or {}
if phase ~= "RolledBack" then
  error("only a RolledBack rollout can be retried; this one is " .. phase, 0)
end
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end

local key = "rollouts.modelrollout.io/retry"
obj.metadata.annotations[key] = token(obj.metadata.annotations[key], status.lastHandledRetry)
return obj
