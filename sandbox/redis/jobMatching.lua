-- (FUNCTION LOAD needs a first line `#!lua name=jobMatching`: sandbox/redis/__init__.py adds it.)
-- emp.deploy sandbox: atomic job claiming for EMP workers (docs/emp-contracts.md, "Claiming jobs").
-- FCALL findMatchingJob 0 <capabilities JSON> <max_scan>
-- Scans the top of jobs:pending (highest score first) and claims the first job the
-- worker can serve: ZREM + job hash status=assigned + jobs:active:{worker} + worker:{id} busy
-- + PUBLISH job_claimed and update_job_progress + XADD progress:{job}.
-- Returns JSON {jobId, job} or nil.

local function iso_now()
  local t = redis.call('TIME')
  local secs = tonumber(t[1])
  local ms = math.floor(tonumber(t[2]) / 1000)
  -- civil-from-days (Howard Hinnant), UTC
  local days = math.floor(secs / 86400)
  local rem = secs - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d,
    math.floor(rem / 3600), math.floor((rem % 3600) / 60), rem % 60, ms)
end

local function hash_to_table(flat)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

local function decode(value, default)
  if type(value) ~= 'string' or value == '' then return default end
  local ok, result = pcall(cjson.decode, value)
  if ok and result ~= nil then return result end
  return default
end

local function contains(list, item)
  if type(list) ~= 'table' then return false end
  for _, v in ipairs(list) do
    if v == item then return true end
  end
  return false
end

-- Service: the job's service_required must be in job_service_required_map (the EMP function reads no other list).
local function service_ok(job, caps)
  local map = caps.job_service_required_map
  if type(map) ~= 'table' then return false end
  return contains(map, job.service_required)
end

-- Hardware: every numeric minimum the job asks for must be met by the worker.
local function hardware_ok(req, caps)
  local need = req.hardware
  if type(need) ~= 'table' then return true end
  local have = caps.hardware or {}
  for k, v in pairs(need) do
    if type(v) == 'number' then
      local h = tonumber(have[k])
      if h == nil or h < v then return false end
    elseif type(v) == 'boolean' then
      if v and not have[k] then return false end
    end
  end
  return true
end

-- Models: all requested models must be available (list, or map service -> list).
local function models_ok(job, req, caps)
  local wanted = req.models
  if type(wanted) ~= 'table' or #wanted == 0 then return true end
  local have = caps.models
  if type(have) ~= 'table' then return false end
  if #have == 0 and next(have) ~= nil then have = have[job.service_required] or {} end
  for _, model in ipairs(wanted) do
    if not contains(have, model) then return false end
  end
  return true
end

-- Customer isolation: strict workers serve only allowed customers; denied ones never.
local function customer_ok(job, caps)
  local access = caps.customer_access
  if type(access) ~= 'table' then return true end
  local customer = job.customer_id
  if customer ~= nil and customer ~= '' and contains(access.denied_customers, customer) then return false end
  if access.isolation == 'strict' then
    return customer ~= nil and contains(access.allowed_customers, customer)
  end
  return true
end

local function find_matching_job(keys, args)
  local caps = decode(args[1], nil)
  if type(caps) ~= 'table' then
    return redis.error_reply('findMatchingJob: capabilities must be a JSON object')
  end
  local worker_id = caps.worker_id
  if type(worker_id) ~= 'string' or worker_id == '' then
    return redis.error_reply('findMatchingJob: capabilities.worker_id is required')
  end
  local max_scan = tonumber(args[2] or '100') or 100
  if max_scan < 1 then max_scan = 1 end

  local ids = redis.call('ZREVRANGE', 'jobs:pending', 0, max_scan - 1)
  for _, job_id in ipairs(ids) do
    local job = hash_to_table(redis.call('HGETALL', 'job:' .. job_id))
    if job.id ~= nil then
      local req = decode(job.requirements, {})
      if type(req) ~= 'table' then req = {} end
      if service_ok(job, caps) and hardware_ok(req, caps) and models_ok(job, req, caps) and customer_ok(job, caps) then
        local now = iso_now()
        redis.call('ZREM', 'jobs:pending', job_id)
        redis.call('HSET', 'job:' .. job_id, 'status', 'assigned', 'worker_id', worker_id, 'assigned_at', now)
        -- as the EMP function: jobs:active and the answer carry the job as it was read (before assignment),
        -- the worker's hash says busy, and the claim goes to job_claimed, update_job_progress and progress:{id}
        local job_json = cjson.encode(job)
        redis.call('HSET', 'jobs:active:' .. worker_id, job_id, job_json)
        redis.call('HSET', 'worker:' .. worker_id, 'status', 'busy', 'current_job_id', job_id,
          'last_status_change', now)
        local millis = tonumber(redis.call('TIME')[1]) * 1000
        redis.call('PUBLISH', 'job_claimed', cjson.encode({
          job_id = job_id, worker_id = worker_id, status = 'claimed', message = 'Job claimed by worker',
          claimed_at = now, timestamp = millis, service_required = job.service_required,
          customer_id = job.customer_id, workflow_id = job.workflow_id, step_number = job.step_number,
          total_steps = job.total_steps }))
        redis.call('PUBLISH', 'update_job_progress', cjson.encode({
          job_id = job_id, worker_id = worker_id, progress = 0, timestamp = millis }))
        redis.call('XADD', 'progress:' .. job_id, '*', 'job_id', job_id, 'worker_id', worker_id,
          'status', 'assigned', 'progress', '0', 'message', 'Job assigned to worker', 'assigned_at', now)
        return cjson.encode({ jobId = job_id, job = job })
      end
    end
  end
  return nil
end

redis.register_function('findMatchingJob', find_matching_job)
