-- Skip gates: advance the current step now, past its pause and the verdicts
-- of its gates (holding, not yet evaluated, or failing below failureLimit),
-- once; skipping the last step ends the rollout Succeeded. Sets
-- rollouts.modelrollout.io/skip-gates to a new token, with
-- rollouts.modelrollout.io/promote-reason and rollouts.modelrollout.io/requested-by.
-- Argo CD does not tell the script who runs it: its own audit (the
-- Application's ResourceActionRan event) names the user.

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


-- overridable says why the rollout cannot be overridden now, or nil: the
-- same rules as the controller and kubectl modelrollout promote.
local function overridable(phase, status, spec, annotations)
  if not ((phase == "Progressing" or phase == "Paused") and status.currentStepIndex ~= nil) then
    return "only a Progressing or Paused rollout can be overridden; this one is " .. phase
  end
  if spec.paused == true then
    return "the rollout is paused by spec.paused; an override does not lift a hold: set spec.paused to false in Git first"
  end
  if annotations["rollouts.modelrollout.io/paused"] == "true" then
    return "the rollout is paused by the rollouts.modelrollout.io/paused annotation; an override does not lift a hold: resume it first"
  end
  return nil
end

local phase = effectivePhase()
local spec = obj.spec or {}
local status = obj.status or {}
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
local annotations = obj.metadata.annotations
local refused = overridable(phase, status, spec, annotations)
if refused ~= nil then
  error(refused, 0)
end

local key = "rollouts.modelrollout.io/skip-gates"
annotations[key] = token(annotations[key], status.lastHandledSkipGates)
annotations["rollouts.modelrollout.io/promote-reason"] = "skip-gates action from Argo CD"
annotations["rollouts.modelrollout.io/requested-by"] = "an Argo CD user (see the Application's ResourceActionRan event)"
return obj
