from __future__ import annotations

from pathlib import Path

import pytest

from loadtests import __main__ as cli
from loadtests import server, workload


def catalog(classifiers=("lstm",), generators=None):
    return workload.Catalog(list(classifiers), [f"mnist-{c}" for c in classifiers], None, dict(generators or {}))


def test_user_classes_follow_what_is_served():
    assert cli.user_classes(catalog(generators={"vae2": 2}), grpc=True) == [
        "ClassifyJsonUser",
        "ClassifyImageUser",
        "BulkClassifyUser",
        "GrpcPredictUser",
        "GenerateUser",
        "ManifoldUser",
    ]
    assert cli.user_classes(catalog(), grpc=False) == ["ClassifyJsonUser", "ClassifyImageUser", "BulkClassifyUser"]
    assert cli.user_classes(catalog(classifiers=(), generators={"vae1": 1}), grpc=True) == ["GenerateUser"]
    assert cli.user_classes(catalog(classifiers=()), grpc=True) == []


def test_user_classes_exist_in_the_locustfile():
    text = cli.LOCUSTFILE.read_text()
    for name in cli.HTTP_USERS + cli.GENERATION_USERS + cli.GRPC_USERS:
        assert f"class {name}(" in text


def test_locust_command_is_bounded_and_headless(tmp_path):
    cmd = cli.locust_command("http://127.0.0.1:1", "127.0.0.1:2", ["ClassifyJsonUser"], 5, 2.0, 30.0, tmp_path, "/data", 64)
    joined = " ".join(cmd)
    for part in [
        "--headless",
        "--users 5",
        "--spawn-rate 2",
        "--run-time 30s",
        f"--csv {tmp_path / 'locust'}",
        f"--html {tmp_path / 'report.html'}",
        "--grpc-target 127.0.0.1:2",
        "--bulk-rows 64",
    ]:
        assert part in joined
    assert cmd[-1] == "ClassifyJsonUser"
    assert "--grpc-target" not in cli.locust_command("http://h", None, ["A"], 1, 1, 1, tmp_path, "/d", 1)


def test_summary_of_keeps_the_tables_and_drops_native_log_noise():
    log = "[x] INFO starting\nType     Name   # reqs\nI0000 00:00 grpc noise\nPOST /v1/classify 3\n"
    assert cli.summary_of(log) == "Type     Name   # reqs\nPOST /v1/classify 3"
    assert cli.summary_of("nothing") == "(locust printed no summary)"


def test_verdict_subcommand(tmp_path, capsys):
    (tmp_path / "locust_stats.csv").write_text(
        "Type,Name,Request Count,Failure Count,Requests/s,50%,99%\nPOST,/v1/classify,10,0,1.0,5,9\n,Aggregated,10,0,1.0,5,9\n"
    )
    assert cli.main(["verdict", str(tmp_path), "--profile", "smoke"]) == 0
    assert "SLO verdict: PASS" in capsys.readouterr().out
    assert (tmp_path / "verdict.json").is_file() and (tmp_path / "verdict.txt").is_file()


def test_verdict_subcommand_without_csv_is_an_error(tmp_path, capsys):
    assert cli.main(["verdict", str(tmp_path)]) == 2
    assert "locust_stats.csv" in capsys.readouterr().err


def test_run_refuses_unbounded_load(capsys):
    assert cli.main(["run", "--url", "http://127.0.0.1:9", "--users", "100000"]) == 2
    assert "users must be within" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("cmdline", "role"),
    [
        (["python", "-m", "serving", "--no-build"], "launcher"),
        (["/v/bin/python", "-m", "bentoml", "serve", "serving.service:DigitsService"], "bentoml parent"),
        (["/v/bin/python", "-m", "_bentoml_impl.worker.service", "serving.service:DigitsService", "--fd", "3"], "HTTP worker"),
        (["sleep", "1"], None),
    ],
)
def test_role_of(cmdline, role):
    assert server.role_of(cmdline) == role


def test_free_port_is_a_port():
    assert 0 < server.free_port() < 65536


def test_default_data_dir_prefers_env(monkeypatch):
    monkeypatch.setenv("DATA_DIR", "/somewhere")
    assert workload.default_data_dir() == "/somewhere"
    monkeypatch.delenv("DATA_DIR")
    assert Path(workload.default_data_dir()).name == "datasets"
