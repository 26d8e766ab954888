-- Argo CD health check of podstore's custom resources, for both kinds:
--   resource.customizations.health.podstore.dev_StoragePod
--   resource.customizations.health.podstore.dev_StorageContainer
-- Argo CD sets `obj` (the live object) and expects a table with `status` (Healthy,
-- Progressing, Degraded, Suspended, Missing or Unknown) and `message`.
--
-- It reads the status the podstore agent writes (podstore's CONTRACT.md): `phase`,
-- `reason`, `message`, `observedGeneration`, and the conditions Ready and the kstatus
-- pair Reconciling and Stalled, each with its own observedGeneration.
--   Progressing  no status yet; being deleted (phase Terminating); the agent has not
--                observed the current generation (whatever the old status said);
--                Reconciling is True; phase Pending (the agent retries: the image is
--                pulling, the pod is not Ready yet, ...)
--   Degraded     Stalled is True; phase Failed (the agent gives up until the spec changes)
--   Healthy      Ready is True, for the current generation

local hs = {}

local function find_condition(status, wanted)
  if type(status.conditions) ~= "table" then
    return nil
  end
  for _, condition in ipairs(status.conditions) do
    if type(condition) == "table" and condition.type == wanted then
      return condition
    end
  end
  return nil
end

-- "Reason: message", "Reason", "message" or the fallback, whichever the fields allow.
local function describe(reason, message, fallback)
  local has_reason = type(reason) == "string" and reason ~= ""
  local has_message = type(message) == "string" and message ~= ""
  if has_reason and has_message then
    return reason .. ": " .. message
  elseif has_reason then
    return reason
  elseif has_message then
    return message
  end
  return fallback
end

local function is_true(condition)
  return condition ~= nil and condition.status == "True"
end

-- A condition written for an older generation says nothing about the current spec.
local function is_current(condition, generation)
  if condition == nil or generation == nil or condition.observedGeneration == nil then
    return true
  end
  return condition.observedGeneration >= generation
end

local function health(obj)
  local metadata = obj.metadata or {}
  local status = obj.status
  local kind = obj.kind or "object"
  if type(status) ~= "table" or next(status) == nil then
    return "Progressing", "Waiting for the podstore agent of the node to report a status"
  end
  local phase = status.phase
  local generation = metadata.generation

  if metadata.deletionTimestamp ~= nil or phase == "Terminating" then
    -- The agent sets only the phase here: reason and message may be an older state's.
    return "Progressing", "Terminating: the podstore agent is removing the storage containers"
  end

  -- A status written for an older spec says nothing about the current one, Failed or not.
  local observed = status.observedGeneration
  if generation ~= nil and (observed == nil or observed < generation) then
    return "Progressing", "Waiting for the podstore agent to observe generation "
      .. tostring(generation) .. " (observed " .. tostring(observed or "none") .. ")"
  end

  local stalled = find_condition(status, "Stalled")
  if is_true(stalled) and is_current(stalled, generation) then
    return "Degraded", describe(stalled.reason, stalled.message, "Stalled")
  end
  if phase == "Failed" then
    return "Degraded", describe(status.reason, status.message, kind .. " failed")
  end

  local reconciling = find_condition(status, "Reconciling")
  if is_true(reconciling) and is_current(reconciling, generation) then
    return "Progressing", describe(reconciling.reason, reconciling.message, "Reconciling")
  end

  local ready = find_condition(status, "Ready")
  if is_true(ready) and is_current(ready, generation) then
    return "Healthy", describe(nil, ready.message, describe(nil, phase, "Ready"))
  end
  if not is_current(ready, generation) then
    return "Progressing", "Waiting for the Ready condition of generation " .. tostring(generation)
  end
  if phase == "Pending" or phase == nil or phase == "" then
    return "Progressing", describe(status.reason, status.message,
      "Pending: waiting for the podstore agent")
  end
  -- Not Ready, neither failed nor stalled: the agent is still at it.
  if ready ~= nil then
    return "Progressing", describe(ready.reason, ready.message, tostring(phase))
  end
  return "Progressing", describe(status.reason, status.message, tostring(phase))
end

hs.status, hs.message = health(obj)
return hs
