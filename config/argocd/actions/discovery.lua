-- Argo CD action discovery for rollouts.modelrollout.io/ModelRollout.
-- Each action is enabled only in the phases where the controller acts on it,
-- the same rules as `kubectl modelrollout` uses:
--   promote  Progressing or Paused, with a current step
--   pause    Waiting, Progressing or Paused, not already paused by annotation
--   resume   the paused annotation is set (spec.paused belongs to Git)
--   abort    Waiting, Progressing or Paused
--   retry    RolledBack
--   promote-full  Progressing or Paused, with a current step before the last,
--                 not paused by spec.paused or the annotation
--   skip-gates    Progressing or Paused, with a current step, not paused by
--                 spec.paused or the annotation
-- The phase is taken as Idle without spec.canary, and as Waiting while the
-- controller has not yet started the rollout of the current stable/canary pair.
-- Like the actions, it uses only what the sandbox Argo CD gives argocd-cm
-- scripts: the base and table libraries, and os (time, date) via require.

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
local status = obj.status or {}
local annotations = obj.metadata.annotations or {}
local pausedByAnnotation = annotations["rollouts.modelrollout.io/paused"] ~= nil and annotations["rollouts.modelrollout.io/paused"] ~= ""
local active = phase == "Waiting" or phase == "Progressing" or phase == "Paused"

local steps = 0
if (obj.spec or {}).steps ~= nil then
  steps = #obj.spec.steps
end
if steps == 0 then
  steps = 5
end
local overridable = (phase == "Progressing" or phase == "Paused") and status.currentStepIndex ~= nil
  and (obj.spec or {}).paused ~= true and annotations["rollouts.modelrollout.io/paused"] ~= "true"

local actions = {}
actions["promote"] = {
  ["disabled"] = not ((phase == "Progressing" or phase == "Paused") and status.currentStepIndex ~= nil),
  ["iconClass"] = "fa fa-fw fa-forward",
  ["displayName"] = "Promote: end the current step's pause",
}
actions["pause"] = {
  ["disabled"] = not active or annotations["rollouts.modelrollout.io/paused"] == "true",
  ["iconClass"] = "fa fa-fw fa-pause",
  ["displayName"] = "Pause at the current step",
}
actions["resume"] = {
  ["disabled"] = not pausedByAnnotation,
  ["iconClass"] = "fa fa-fw fa-play",
  ["displayName"] = "Resume (remove the paused annotation)",
}
actions["abort"] = {
  ["disabled"] = not active,
  ["iconClass"] = "fa fa-fw fa-undo",
  ["displayName"] = "Abort: roll the canary back",
}
actions["retry"] = {
  ["disabled"] = phase ~= "RolledBack",
  ["iconClass"] = "fa fa-fw fa-redo",
  ["displayName"] = "Retry from step 1",
}
actions["promote-full"] = {
  ["disabled"] = not (overridable and status.currentStepIndex < steps - 1),
  ["iconClass"] = "fa fa-fw fa-fast-forward",
  ["displayName"] = "Promote full: go to 100% now, past pauses and gates",
}
actions["skip-gates"] = {
  ["disabled"] = not overridable,
  ["iconClass"] = "fa fa-fw fa-step-forward",
  ["displayName"] = "Skip gates: advance the current step now, once",
}
return actions
