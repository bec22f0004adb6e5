-- Argo CD health check for kubetune.io/FineTuneJob.
-- Install: argocd-cm key `resource.customizations.health.kubetune.io_FineTuneJob`
-- (see docs/gitops.md). Reads the status the kubetune operator writes:
-- status.phase (Pending, Running, Succeeded, Failed, Suspended), status.conditions
-- (kstatus: Ready, Reconciling, Stalled) and status.observedGeneration.
--   Pending, Running     -> Progressing
--   Succeeded            -> Healthy
--   Failed (or Stalled)  -> Degraded
--   Suspended            -> Suspended
local hs = {}

local function condition(status, ctype)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c == nil then
    return fallback
  end
  if c.reason ~= nil and c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  if c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c.reason ~= nil then
    return c.reason
  end
  return fallback
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the kubetune operator to pick up the FineTuneJob"
  return hs
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local phase = status.phase
local ready = condition(status, "Ready")
local stalled = condition(status, "Stalled")

if phase == "Succeeded" then
  hs.status = "Healthy"
  if status.artifact ~= nil and status.artifact.uri ~= nil then
    hs.message = "Trained model at " .. status.artifact.uri
  else
    hs.message = describe(ready, "Training succeeded")
  end
  return hs
end

if phase == "Failed" or (stalled ~= nil and stalled.status == "True") then
  hs.status = "Degraded"
  local failed = condition(status, "Failed")
  if failed ~= nil and failed.status == "True" then
    hs.message = describe(failed, "Training failed")
  else
    hs.message = describe(stalled, describe(ready, "Training failed"))
  end
  return hs
end

if phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = describe(condition(status, "Suspended"), "Suspended (spec.suspend is true)")
  return hs
end

if phase == nil and ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end

hs.status = "Progressing"
local message = describe(condition(status, "Reconciling"), describe(ready, phase or "Pending"))
local progress = status.progress
if progress ~= nil and progress.step ~= nil and progress.maxSteps ~= nil then
  message = message .. " (step " .. tostring(progress.step) .. "/" .. tostring(progress.maxSteps) .. ")"
end
hs.message = message
return hs
