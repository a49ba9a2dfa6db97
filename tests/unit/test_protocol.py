"""The protocol's schemas accept what the orchestrator writes and reject what breaks the contract."""

import jsonschema
import pytest

from embedperf.models.registry import get_model
from embedperf.orchestrator.execute import Executor
from embedperf.orchestrator.plan import ModelPlan
from embedperf.protocol import validate
from embedperf.runners.registry import get_runtime
from embedperf.spec import build, model_choice


def a_request(runtime="null"):
    choice = model_choice("all-MiniLM-L6-v2", "package")
    spec = build([choice], runtime, "1", "16")
    executor = Executor(spec, None, 2, print)
    shapes = [{"batch": 1, "seq": 16, "workload": "/w.safetensors", "embeddings": "/e.safetensors"}]
    return executor.request(ModelPlan(choice, get_model(choice.name)), get_runtime(runtime), shapes)


def test_orchestrator_requests_validate():
    validate("request", a_request())


def test_schema_rejects_a_wrong_version_and_unknown_fields():
    req = a_request()
    with pytest.raises(jsonschema.ValidationError):
        validate("request", {**req, "protocol": 2})
    with pytest.raises(jsonschema.ValidationError):
        validate("request", {**req, "surprise": 1})
    with pytest.raises(jsonschema.ValidationError):
        validate("request", {**req, "timing": {**req["timing"], "max_seconds": 0}})
