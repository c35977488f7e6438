-- Resume: remove the rollouts.modelrollout.io/paused annotation. It cannot
-- undo spec.paused, which belongs to Git.

local annotations = obj.metadata.annotations
if annotations == nil or annotations["rollouts.modelrollout.io/paused"] == nil then
  error("the rollout is not paused by the rollouts.modelrollout.io/paused annotation", 0)
end
annotations["rollouts.modelrollout.io/paused"] = nil
return obj
