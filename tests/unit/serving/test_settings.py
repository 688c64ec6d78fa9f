from __future__ import annotations

import dataclasses
import json

import pytest

from serving.settings import Settings, env_table, main, unknown_env_names


def test_defaults_without_any_variable():
    s = Settings.from_env({})
    assert s == Settings()
    assert (s.host, s.http_port, s.grpc_port) == ("127.0.0.1", 3000, 8500)
    assert s.models == ()
    assert s.default_classifier is None
    assert s.providers == "auto"
    assert s.max_body_bytes == 16 * 1024 * 1024
    assert s.grpc_max_message_bytes == 16 * 1024 * 1024
    assert s.max_image_pixels == 16_000_000
    assert (s.max_batch_size, s.queue_delay_ms, s.max_queue) == (64, 0.0, 128)
    assert s.drain_timeout_s == 20.0
    assert s.log_level == "INFO"


def test_reads_prefixed_variables_and_ignores_others():
    env = {
        "SERVING_HOST": "0.0.0.0",
        "SERVING_HTTP_PORT": "3100",
        "SERVING_MODELS": " mnist-lstm, fashion-vae2-decoder:abc ,",
        "SERVING_DEFAULT_CLASSIFIER": "gru",
        "SERVING_PROVIDERS": "cuda, cpu",
        "SERVING_MAX_BODY_BYTES": "2MiB",
        "SERVING_DRAIN_TIMEOUT_S": "0.5",
        "SERVING_LOG_LEVEL": "debug",
        "HTTP_PORT": "1",  # no prefix: not ours
    }
    s = Settings.from_env(env)
    assert s.host == "0.0.0.0"
    assert s.http_port == 3100
    assert s.models == ("mnist-lstm", "fashion-vae2-decoder:abc")
    assert s.default_classifier == "gru"
    assert s.providers == "cuda,cpu"
    assert s.max_body_bytes == 2 * 1024 * 1024
    assert s.drain_timeout_s == 0.5
    assert s.log_level == "DEBUG"


def test_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("SERVING_GRPC_PORT", "9123")
    assert Settings.from_env().grpc_port == 9123


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SERVING_HTTP_PORT", "http"),
        ("SERVING_HTTP_PORT", "70000"),
        ("SERVING_MAX_BATCH_SIZE", "0"),
        ("SERVING_INTRA_OP_THREADS", "-1"),
        ("SERVING_MAX_BODY_BYTES", "lots"),
        ("SERVING_DRAIN_TIMEOUT_S", "nan"),
        ("SERVING_DRAIN_TIMEOUT_S", "-1"),
        ("SERVING_LOG_LEVEL", "LOUD"),
        ("SERVING_PROVIDERS", "auto,cpu"),
        ("SERVING_PROVIDERS", " , "),
        ("SERVING_HOST", "  "),
    ],
)
def test_bad_value_names_the_variable(name, value):
    with pytest.raises(ValueError) as info:
        Settings.from_env({name: value})
    assert str(info.value).startswith(f"{name}: ")


def test_empty_default_classifier_means_none():
    assert Settings.from_env({"SERVING_DEFAULT_CLASSIFIER": ""}).default_classifier is None


def test_settings_are_frozen():
    s = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.http_port = 1  # type: ignore[misc]


def test_describe_is_json_serialisable_and_complete():
    s = Settings.from_env({"SERVING_MODELS": "a,b"})
    described = s.describe()
    assert json.loads(json.dumps(described)) == described
    assert described["models"] == ["a", "b"]
    assert set(described) == {f.name for f in dataclasses.fields(Settings)}


def test_env_table_covers_every_field_in_order():
    table = env_table()
    fields = dataclasses.fields(Settings)
    assert [row[0] for row in table] == ["SERVING_" + f.name.upper() for f in fields]
    assert all(help_text for _, _, help_text in table)
    defaults = {name: default for name, default, _ in table}
    assert defaults["SERVING_HTTP_PORT"] == "3000"
    assert defaults["SERVING_MAX_BODY_BYTES"] == "16MiB"
    assert defaults["SERVING_MODELS"] == ""


def test_every_table_default_parses_back_to_the_field_default():
    env = {name: default for name, default, _ in env_table()}
    assert Settings.from_env(env) == Settings()


def test_unknown_env_names_flags_typos():
    env = {"SERVING_HTTP_PROT": "1", "SERVING_HTTP_PORT": "2", "OTHER": "3"}
    assert unknown_env_names(env) == ["SERVING_HTTP_PROT"]


def test_cli_prints_a_markdown_table(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "| variable | default | meaning |"
    assert len(out) == 2 + len(dataclasses.fields(Settings))
    assert any(line.startswith("| `SERVING_GRPC_PORT` | `8500` |") for line in out)


def test_cli_current_reports_bad_env(monkeypatch, capsys):
    monkeypatch.setenv("SERVING_WORKERS", "zero")
    assert main(["--current"]) == 2
    assert "SERVING_WORKERS" in capsys.readouterr().err
    monkeypatch.setenv("SERVING_WORKERS", "3")
    assert main(["--current"]) == 0
    assert json.loads(capsys.readouterr().out)["workers"] == 3


def test_readme_configuration_table_is_generated_from_the_settings():
    from pathlib import Path

    from serving.settings import markdown_table

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    block = readme.split("<!-- settings-table -->\n", 1)[1].split("\n<!-- /settings-table -->", 1)[0]
    assert block.strip() == markdown_table().strip(), "regenerate with: python -m serving.settings"


@pytest.mark.parametrize(
    "env,words",
    [
        ({"SERVING_TLS_CERT": "c.pem"}, "set both"),
        ({"SERVING_TLS_KEY": "k.pem"}, "set both"),
        ({"SERVING_TLS_CLIENT_CA": "ca.pem"}, "mutual TLS is TLS"),
    ],
)
def test_tls_settings_come_together(env, words):
    with pytest.raises(ValueError, match=words):
        Settings.from_env(env)
    both = Settings.from_env({"SERVING_TLS_CERT": "c.pem", "SERVING_TLS_KEY": "k.pem", "SERVING_TLS_CLIENT_CA": "ca.pem"})
    assert (both.tls_cert, both.tls_key, both.tls_client_ca) == ("c.pem", "k.pem", "ca.pem")


def test_grpc_response_compression_is_one_of_grpcs_algorithms():
    assert Settings.from_env({}).grpc_response_compression == "none"
    assert Settings.from_env({"SERVING_GRPC_RESPONSE_COMPRESSION": " GZIP "}).grpc_response_compression == "gzip"
    with pytest.raises(ValueError, match="none, gzip, deflate"):
        Settings.from_env({"SERVING_GRPC_RESPONSE_COMPRESSION": "br"})
