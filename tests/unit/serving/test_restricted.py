"""SERVING_RESTRICTED_API: parsing, which group a request belongs to, and the key check."""

from __future__ import annotations

import pytest

from contract.errors import Forbidden
from serving.settings import Settings
from serving.transport.restricted import Restricted, grpc_group, http_group


def test_parse_groups_and_keys():
    r = Restricted.parse(" model-repository,shared-memory : Admin-Key=s3cret=x ; statistics:stats-key=v ")
    assert r.keys == {
        "model-repository": ("admin-key", "s3cret=x"),
        "shared-memory": ("admin-key", "s3cret=x"),
        "statistics": ("stats-key", "v"),
    }
    assert Restricted.parse("").keys == {}


@pytest.mark.parametrize(
    "raw,words",
    [
        ("model-repository", "GROUPS:KEY=VALUE"),
        ("model-repository:admin-key", "GROUPS:KEY=VALUE"),
        ("model-repository:=x", "GROUPS:KEY=VALUE"),
        ("inference:k=v", "unknown restricted API group 'inference'"),
        ("statistics:a=1;statistics:b=2", "restricted twice"),
        ("statistics:bad key=1", "GROUPS:KEY=VALUE"),
    ],
)
def test_bad_settings_are_refused_at_start_up(raw, words):
    with pytest.raises(ValueError, match=words):
        Restricted.parse(raw)
    with pytest.raises(ValueError):
        Settings.from_env({"SERVING_RESTRICTED_API": raw})


@pytest.mark.parametrize(
    "method,path,group",
    [
        ("POST", "/v2/repository/index", "model-repository"),
        ("PUT", "/v1/models/lstm/labels/stable", "model-repository"),
        ("GET", "/v1/models/lstm/labels/stable", None),
        ("GET", "/v2/systemsharedmemory/status", "shared-memory"),
        ("POST", "/v2/cudasharedmemory/region/x/register", "shared-memory"),
        ("GET", "/v2/models/stats", "statistics"),
        ("GET", "/v2/models/lstm/versions/1/stats", "statistics"),
        ("POST", "/v2/models/lstm/infer", None),
        ("GET", "/v2/models/lstm", None),
        ("POST", "/v1/classify", None),
    ],
)
def test_http_groups(method, path, group):
    assert http_group(method, path) == group


def test_grpc_groups():
    assert grpc_group("RepositoryModelLoad") == "model-repository"
    assert grpc_group("SystemSharedMemoryRegister") == grpc_group("CudaSharedMemoryStatus") == "shared-memory"
    assert grpc_group("ModelStatistics") == "statistics"
    assert grpc_group("ModelInfer") is grpc_group("ServerLive") is None


def test_check():
    r = Restricted.parse("statistics:stats-key=v")
    r.check("statistics", {"stats-key": "v"}.get)
    r.check("model-repository", {}.get)  # not restricted here
    r.check(None, {}.get)
    for sent in ({}, {"stats-key": "w"}, {"other": "v"}):
        with pytest.raises(Forbidden, match="send the header 'stats-key'"):
            r.check("statistics", sent.get)
