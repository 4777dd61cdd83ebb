"""Dapr's Jobs API over HTTP: ``POST /v1.0-alpha1/jobs/{name}`` with ``{schedule, dueTime,
repeats, ttl, data, overwrite, failure_policy}`` schedules (204), ``GET`` answers the job as
JSON (200), ``DELETE`` deletes it (204); the same under ``/v1.0/jobs/{name}``. ``data`` is any
JSON value, kept as a ``google.protobuf.Value`` (as daprd does), so a gRPC app receives it as
an ``Any`` of that type and ``GET`` answers it as JSON; data scheduled over gRPC with another
type answers as ``{"@type", "value"}`` (base64). ``failure_policy`` is ``{"drop": {}}`` or
``{"constant": {"interval": "1s", "maxRetries": 3}}``. All call
:class:`~layotto.server.runtime.jobs.JobService`, as the gRPC handlers do."""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp import web
from google.protobuf import json_format, struct_pb2

from layotto.server.errors import InvalidArgument
from layotto.server.http.errors import Call, dapr_errors, field_of, require_type
from layotto.server.http.routing import Routes
from layotto.server.runtime.job_times import go_duration, require_duration
from layotto.server.runtime.jobs import ConstantPolicy, DropPolicy, FailurePolicy, JobData, JobService, JobSpec

VALUE_TYPE = "type.googleapis.com/google.protobuf.Value"
_INTERVAL = "failure_policy.constant.interval"


def _optional(body: dict[str, Any], name: str, kind: type, expected: str) -> Any:
    value = field_of(body, name)
    return None if value is None else require_type(value, kind, name, expected)


def _policy(value: Any) -> FailurePolicy | None:
    if value is None:
        return None
    policy = require_type(value, dict, "failure_policy", "an object")
    if "drop" in policy:
        return DropPolicy()
    constant = require_type(field_of(policy, "constant"), dict, "failure_policy", 'an object with "drop" or "constant"')
    interval_text = _optional(constant, "interval", str, "a duration such as 1s")
    interval = None
    if interval_text is not None:
        seconds = go_duration(interval_text)
        if seconds is None:
            raise InvalidArgument(_INTERVAL, f"{interval_text!r} is not a duration such as 500ms or 10s")
        interval = require_duration(seconds, _INTERVAL)
    retries = field_of(constant, "max_retries", field_of(constant, "maxRetries"))
    if retries is not None:
        retries = require_type(retries, int, "failure_policy.constant.max_retries", "an integer")
    return ConstantPolicy(interval, retries)


def _data(value: Any) -> JobData | None:
    if value is None:
        return None
    packed = json_format.ParseDict(value, struct_pb2.Value())
    return JobData(VALUE_TYPE, packed.SerializeToString())


def _data_json(data: JobData) -> Any:
    if data.type_url == VALUE_TYPE:
        return json_format.MessageToDict(struct_pb2.Value.FromString(data.value))
    return {"@type": data.type_url, "value": base64.b64encode(data.value).decode()}


def _policy_json(policy: FailurePolicy) -> dict[str, Any]:
    if isinstance(policy, DropPolicy):
        return {"drop": {}}
    constant: dict[str, Any] = {}
    if policy.interval_seconds is not None:
        constant["interval"] = f"{policy.interval_seconds:g}s"
    if policy.max_retries is not None:
        constant["maxRetries"] = policy.max_retries
    return {"constant": constant}


def job_json(spec: JobSpec) -> dict[str, Any]:
    """A job as Dapr's HTTP API answers it: the fields that are set."""
    answer: dict[str, Any] = {"name": spec.name}
    for key, value in (("schedule", spec.schedule), ("dueTime", spec.due_time), ("repeats", spec.repeats)):
        if value is not None:
            answer[key] = value
    if spec.ttl is not None:
        answer["ttl"] = spec.ttl
    if spec.data is not None:
        answer["data"] = _data_json(spec.data)
    if spec.failure_policy is not None:
        answer["failurePolicy"] = _policy_json(spec.failure_policy)
    return answer


class JobsHttp:
    def __init__(self, jobs: JobService) -> None:
        self._jobs = jobs

    def add_routes(self, routes: Routes) -> None:
        for prefix in ("/v1.0-alpha1/jobs", "/v1.0/jobs"):
            routes.add("POST", prefix + "/{name}", self.schedule)
            routes.add("GET", prefix + "/{name}", self.get)
            routes.add("DELETE", prefix + "/{name}", self.delete)

    @dapr_errors("jobs", "DAPR_SCHEDULER_SCHEDULE_JOB")
    async def schedule(self, call: Call) -> web.Response:
        name = call.params["name"]
        body = require_type(await call.json(), dict, "body", "an object")
        named = field_of(body, "name")
        if named is not None and named != name:
            raise InvalidArgument("name", "the job's name is given in the URL only")
        repeats = _optional(body, "repeats", int, "an integer")
        spec = JobSpec(
            name=name,
            schedule=_optional(body, "schedule", str, "a string"),
            due_time=_optional(body, "dueTime", str, "a string"),
            repeats=repeats,
            ttl=_optional(body, "ttl", str, "a string"),
            data=_data(field_of(body, "data")),
            failure_policy=_policy(field_of(body, "failure_policy", field_of(body, "failurePolicy"))),
        )
        overwrite = bool(_optional(body, "overwrite", bool, "true or false"))
        await self._jobs.schedule(spec, overwrite=overwrite)
        return web.Response(status=204)

    @dapr_errors("jobs", "DAPR_SCHEDULER_GET_JOB")
    async def get(self, call: Call) -> web.Response:
        spec = await self._jobs.get(call.params["name"])
        return web.Response(text=json.dumps(job_json(spec)), content_type="application/json")

    @dapr_errors("jobs", "DAPR_SCHEDULER_DELETE_JOB")
    async def delete(self, call: Call) -> web.Response:
        await self._jobs.delete(call.params["name"])
        return web.Response(status=204)
