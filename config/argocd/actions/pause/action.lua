-- Pause: hold the rollout at its current step. Sets
-- rollouts.modelrollout.io/paused to "true". Gates keep being evaluated and a
-- failing gate still rolls back.

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

local phase = effectivePhase()
if phase ~= "Waiting" and phase ~= "Progressing" and phase ~= "Paused" then
  error("only a Waiting, Progressing or Paused rollout can be paused; this one is " .. phase, 0)
end
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end

obj.metadata.annotations["rollouts.modelrollout.io/paused"] = "true"
return obj
