from __future__ import annotations

import pytest

from loadtests.bench import report


def run(connections, rps, p50, p99):
    return {
        "connections": connections,
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "errors": 0,
        "non2xx": 0,
        "client_cpu_cores": 0.05,
        "server_cpu_cores": 1.5,
    }


def sample_report(**overrides):
    rep = {
        "started": "2026-11-23 12:00:00 UTC",
        "machine": {
            "cores": 2,
            "cpu_model": "AMD EPYC",
            "gpu": None,
            "ort_provider": "CPUExecutionProvider",
            "ort_provider_served": "CPUExecutionProvider",
            "onnxruntime": "1.31.1",
            "bentoml": "1.4.39",
            "python": "3.11.7",
        },
        "load_average": {"before": "0.50 / 0.40 / 0.30", "after": "1.90 / 0.90 / 0.50"},
        "store": "/tmp/store-default",
        "model": "lstm",
        "code": "abc1234",
        "placement": "no pinning",
        "inprocess": [
            {
                "model": "mnist-lstm",
                "task": "classification",
                "provider": "CPUExecutionProvider",
                "batches": {str(b): {"images_per_s": 1000.0 * b**0.5, "ms_per_call": 1.0 * b**0.5} for b in (1, 8, 64, 1024)},
            }
        ],
        "served": [
            {
                "concurrency": 1,
                "rps": 400.0,
                "p50_ms": 2.4,
                "p99_ms": 4.0,
                "errors": 0,
                "mean_batch": 1.0,
                "mean_adaptive_batch": 1.0,
                "server_cpu_cores": 0.9,
                "client_cpu_cores": 0.05,
            },
            {
                "concurrency": 32,
                "rps": 1200.0,
                "p50_ms": 25.0,
                "p99_ms": 45.0,
                "errors": 0,
                "mean_batch": 12.5,
                "mean_adaptive_batch": 12.5,
                "server_cpu_cores": 1.8,
                "client_cpu_cores": 0.15,
            },
        ],
        "bulk": {
            "images_per_s": 28000.0,
            "p50_ms": 36.0,
            "inprocess_images_per_s": 32000.0,
            "inprocess_table_images_per_s": 31000.0,
            "ratio_to_inprocess": 0.93,
        },
        "baseline": {
            "runs": [
                {"concurrency": 1, "rps": 12.0, "p50_ms": 80.0, "p99_ms": 95.0, "errors": 0},
                {"concurrency": 32, "rps": 14.0, "p50_ms": 2200.0, "p99_ms": 2500.0, "errors": 0},
            ],
            "ready_s": 5.0,
            "rss_mb": 600.0,
        },
        "manifold": {
            "served": {"p50_ms": 80.0, "p99_ms": 95.0, "requests": 20},
            "seed_loop": {"calls_measured": 50, "ms_per_call": 70.0, "extrapolated_ms": 63000.0},
        },
        "ready_s": 9.5,
        "processes": [
            {"role": "launcher", "pid": 10, "rss_ready_mb": 55.0, "rss_mb": 55.0, "rss_by_phase_mb": {"ready": 55.0, "after (5)": 55.0}},
            {
                "role": "HTTP worker",
                "pid": 12,
                "rss_ready_mb": 160.0,
                "rss_mb": 420.0,
                "rss_by_phase_mb": {"ready": 160.0, "after (5)": 420.0},
            },
        ],
        "notes": ["GPU figures are unmeasured."],
        "peers": [
            {
                "server": "ours",
                "label": "ours",
                "env": {},
                "ready_s": 4.0,
                "rss_mb": 520.0,
                "processes": 3,
                "runs": [run(1, 1200.0, 0.8, 1.3), run(32, 4000.0, 7.5, 14.0), run(1, 1190.0, 0.82, 1.4)],
                "perf_analyzer": [
                    pa("http", 1, 900, 1100, 2000),
                    pa("http", 32, 2500, 12000, 25000),
                    pa("grpc", 1, 1200, 600, 1200),
                    pa("grpc", 32, 3000, 9000, 20000),
                    pa("tfserving", 32, 2600, 11000, 24000),
                    {"mode": "grpc-shm", "concurrency": 32, "skipped": "no region"},
                ],
                "grpc": {
                    "rps": 3400.0,
                    "p50_ms": 9.0,
                    "p99_ms": 20.0,
                    "errors": 0,
                    "non2xx": 0,
                    "concurrency": 32,
                    "client_cpu_cores": 0.1,
                    "server_cpu_cores": 1.8,
                },
            },
            {
                "server": "ours",
                "label": "ours, delay",
                "env": {"SERVING_QUEUE_DELAY_MS": "2"},
                "ready_s": 4.0,
                "rss_mb": 990.0,
                "processes": 3,
                "runs": [run(1, 300.0, 3.0, 4.0), run(32, 100.0, 90.0, 200.0)],
            },
            {
                "server": "triton",
                "label": "Triton",
                "env": {},
                "ready_s": 6.0,
                "rss_mb": 300.0,
                "processes": 6,
                "runs": [run(1, 237.0, 4.2, 5.1), run(32, 1900.0, 10.1, 15.4), run(1, 230.0, 4.3, 5.2)],
                "perf_analyzer": [pa("http", 32, 1800, 17000, 30000), pa("grpc", 32, 1900, 16000, 29000), pa("grpc", 1, 190, 5200, 6000)],
            },
            {"server": "textbook", "label": "textbook", "skipped": "no .venv-peers"},
        ],
    }
    rep.update(overrides)
    return rep


def pa(mode, concurrency, throughput, p50_us, p99_us):
    return {"mode": mode, "concurrency": concurrency, "throughput": throughput, "p50_us": p50_us, "p90_us": p99_us, "p99_us": p99_us}


def by_name(targets):
    return {t.name: t for t in targets}


def test_all_targets_pass_on_a_good_run():
    targets = report.targets(sample_report())
    assert [t.verdict for t in targets] == ["PASS"] * len(targets)
    ratio = by_name(targets)["(2) / (4) at 32 clients"]
    assert ratio.measured == pytest.approx(1200 / 14) and ratio.shown == "85.7x"


def test_targets_miss_and_unmeasured():
    rep = sample_report(ready_s=16.0, bulk={"ratio_to_inprocess": 0.5}, baseline={"skipped": "no saved_model/"})
    rep["served"][1].update(rps=900.0, p99_ms=51.0, mean_batch=1.0, errors=2)
    rep["processes"][1]["rss_mb"] = 501.0
    t = by_name(report.targets(rep))
    for name in [
        "(2) served req/s at 32 clients",
        "(2) served p99 at 32 clients",
        "(2) mean batch size at 32 clients",
        "(2) errors over all served runs",
        "(3) bulk / in-process at 1,024",
        "(6) launch to ready",
        "(6) HTTP worker RSS (max over workers)",
    ]:
        assert t[name].verdict == "MISS", name
    assert t["(2) / (4) at 32 clients"].verdict == "n/a"
    assert t["(5) 30x30 manifold PNG, served p50"].verdict == "PASS"


def test_targets_on_an_empty_report_are_not_measured():
    assert {t.verdict for t in report.targets({})} == {"n/a"}


def test_markdown_table_shape_and_escaping():
    text = report.markdown_table(["a", "b"], [["x|y", 1], ["z", 2.5]])
    assert text.splitlines() == ["| a | b |", "| :--- | ---: |", "| x\\|y | 1 |", "| z | 2.5 |"]
    with pytest.raises(ValueError):
        report.markdown_table(["a", "b"], [["only one"]])


@pytest.mark.parametrize(
    ("value", "digits", "suffix", "shown"),
    [(None, 1, "", "-"), (3.14159, 2, "", "3.14"), (1234.5, 1, " ms", "1,234 ms"), (0.5, 0, "x", "0x")],
)
def test_fmt(value, digits, suffix, shown):
    assert report.fmt(value, digits, suffix) == shown


def test_render_markdown_has_every_part():
    md = report.render_markdown(sample_report())
    for heading in ["# Benchmark", "## (1)", "## (2)", "## (3)", "## (4)", "## (5)", "## (6)", "## (7)", "## Targets"]:
        assert heading in md
    assert "AMD EPYC" in md and "GPU: none" in md and "CPUExecutionProvider" in md
    assert "Load average (1/5/15 min): before 0.50 / 0.40 / 0.30" in md
    assert "EXTRAPOLATED from 50 measured calls" in md
    assert "| 32 | 14.0 | 2,200 | 2,500 | 0 | 85.7x |" in md
    assert "| HTTP worker | 12 | 160 | 420 |" in md
    assert md.count("PASS") == len(report.targets(sample_report()))


def test_render_markdown_says_what_was_skipped():
    md = report.render_markdown(sample_report(baseline={"skipped": "--skip baseline"}, manifold={"seed_skipped": "no 2-D decoder loaded"}))
    assert "## (4) Baseline: not measured (--skip baseline)" in md
    assert "seed loop: not measured (no 2-D decoder loaded)" in md


def test_peer_targets_are_ratios_to_triton_in_the_same_run():
    t = by_name(report.targets(sample_report()))
    assert t["(7) HTTP req/s at 32 connections / Triton's"].measured == pytest.approx(4000 / 1900)
    assert t["(7) HTTP p99 at 32 connections / Triton's"].measured == pytest.approx(14.0 / 15.4)
    assert t["(7) 1 connection p50, after the 32-connection run"].measured == pytest.approx(0.82)
    assert t["(7) gRPC Predict req/s at 32 / HTTP's"].measured == pytest.approx(3400 / 4000)
    assert t["(7) RSS of all server processes (max over the runs)"].measured == 520.0  # the A/B row is not ours-plain
    rep = sample_report()
    rep["peers"][2]["runs"][1]["p99_ms"] = 12.0
    rep["peers"][0]["grpc"]["rps"] = 2000.0
    t = by_name(report.targets(rep))
    assert t["(7) HTTP p99 at 32 connections / Triton's"].verdict == "MISS"
    assert t["(7) gRPC Predict req/s at 32 / HTTP's"].verdict == "MISS"
    rep["peers"] = [rep["peers"][0]]
    assert by_name(report.targets(rep))["(7) HTTP req/s at 32 connections / Triton's"].verdict == "n/a"


def test_side_by_side_table_marks_the_repeated_single_connection_run():
    md = report.render_markdown(sample_report())
    assert "| ours | 1 (after 32) | 1,190 |" in md
    assert "TF-Serving gRPC `Predict` (h2load) | 32 | 3,400 |" in md
    assert "skipped: no .venv-peers" in md


def test_fast_path_targets_come_from_perf_analyzer_rows():
    t = by_name(report.targets(sample_report()))
    assert t["(7) v2 gRPC infer/s at 32 / our v2 HTTP (perf_analyzer)"].measured == pytest.approx(3000 / 2500)
    assert t["(7) v2 gRPC infer/s at 32 / Triton's gRPC"].measured == pytest.approx(3000 / 1900)
    assert t["(7) v2 gRPC p99 at 32 / Triton's gRPC p99"].measured == pytest.approx(20000 / 29000)
    assert t["(7) v2 gRPC p50 at 1 / our v2 HTTP p50"].measured == pytest.approx(600 / 1100)
    assert t["(7) TF Serving Predict infer/s at 32 / our v2 HTTP"].measured == pytest.approx(2600 / 2500)
    assert t["(7) RSS of all server processes / Triton's"].measured == pytest.approx(520 / 300)
    rep = sample_report()
    rep["peers"][0]["perf_analyzer"] = [{"skipped": "perf_analyzer cannot load libb64.so.0d"}]
    assert by_name(report.targets(rep))["(7) v2 gRPC infer/s at 32 / Triton's gRPC"].verdict == "n/a"


def test_perf_analyzer_table_puts_the_servers_side_by_side():
    md = report.render_markdown(sample_report())
    assert "| grpc | 32 | 3,000, 9.0 / 20.0 | 1,900, 16.0 / 29.0 | 1.58x |" in md
    assert "| grpc-shm | 32 | skipped: no region | — | — |" in md
