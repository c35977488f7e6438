-- Argo CD health check for rollouts.modelrollout.io/ModelRollout.
--
--   Progressing  the controller has not observed the latest spec yet
--                (status.observedGeneration < metadata.generation), or the
--                rollout moves: phase Waiting or Progressing
--   Suspended    the rollout holds: phase Paused (spec.paused, the paused
--                annotation, or a step without pause waiting for a promote),
--                or a pause was requested and the controller has not caught up
--   Healthy      phase Succeeded or Idle
--   Degraded     phase RolledBack, or a Stalled condition is True (an invalid
--                gate, or the progress deadline passed)
--
-- The message is status.message, the controller's one-line summary.
--
-- Written for the sandbox Argo CD gives argocd-cm scripts: the base and table
-- libraries only (no string or math library).

local hs = {}

local function conditionTrue(conditions, type)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == type and c.status == "True" then
      return c
    end
  end
  return nil
end

local function pauseRequested()
  if obj.spec ~= nil and obj.spec.paused == true then
    return true
  end
  local annotations = obj.metadata.annotations
  return annotations ~= nil and annotations["rollouts.modelrollout.io/paused"] == "true"
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to report status"
  return hs
end

local message = status.message or ""
local generation = obj.metadata.generation
local observed = status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  if observed == nil then
    hs.message = "Waiting for the controller to observe the rollout"
  else
    hs.message = "Waiting for the controller to observe generation " .. tostring(generation) ..
      " (observed " .. tostring(observed) .. ")"
  end
  return hs
end

local phase = status.phase
local stalled = conditionTrue(status.conditions, "Stalled")

if phase == "RolledBack" or stalled ~= nil then
  hs.status = "Degraded"
  if message == "" and stalled ~= nil then
    message = stalled.message or ""
  end
  hs.message = message
  return hs
end

if phase == "Succeeded" or phase == "Idle" then
  hs.status = "Healthy"
  hs.message = message
  return hs
end

if phase == "Paused" then
  hs.status = "Suspended"
  hs.message = message
  return hs
end

if phase == "Waiting" or phase == "Progressing" then
  if pauseRequested() then
    hs.status = "Suspended"
  else
    hs.status = "Progressing"
  end
  hs.message = message
  return hs
end

if phase == nil or phase == "" then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to report a phase"
  return hs
end

hs.status = "Unknown"
hs.message = "Unknown phase " .. tostring(phase) .. ": " .. message
return hs
