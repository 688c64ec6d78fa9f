from __future__ import annotations

import pytest

from loadtests import promtext

BEFORE = """# HELP model_batch_size Rows per ONNX Runtime call, per model
# TYPE model_batch_size histogram
model_batch_size_bucket{le="1.0",model="mnist-lstm"} 5.0
model_batch_size_bucket{le="+Inf",model="mnist-lstm"} 5.0
model_batch_size_count{model="mnist-lstm"} 5.0
model_batch_size_sum{model="mnist-lstm"} 5.0
model_batch_size_count{model="fashion-vae2-decoder"} 2.0
model_batch_size_sum{model="fashion-vae2-decoder"} 1800.0
# HELP bentoml_service_adaptive_batch_size adaptive batch size
# TYPE bentoml_service_adaptive_batch_size histogram
bentoml_service_adaptive_batch_size_count{method_name="predict_items",service_name="digits",worker_index="1"} 5.0
bentoml_service_adaptive_batch_size_sum{method_name="predict_items",service_name="digits",worker_index="1"} 5.0
"""

AFTER = """# TYPE model_batch_size histogram
model_batch_size_count{model="mnist-lstm"} 105.0
model_batch_size_sum{model="mnist-lstm"} 1605.0
model_batch_size_count{model="mnist-gru"} 4.0
model_batch_size_sum{model="mnist-gru"} 8.0
model_batch_size_count{model="fashion-vae2-decoder"} 3.0
model_batch_size_sum{model="fashion-vae2-decoder"} 2700.0
# TYPE bentoml_service_adaptive_batch_size histogram
bentoml_service_adaptive_batch_size_count{method_name="predict_items",service_name="digits",worker_index="1"} 55.0
bentoml_service_adaptive_batch_size_sum{method_name="predict_items",service_name="digits",worker_index="1"} 805.0
bentoml_service_adaptive_batch_size_count{method_name="predict_items",service_name="digits",worker_index="2"} 10.0
bentoml_service_adaptive_batch_size_sum{method_name="predict_items",service_name="digits",worker_index="2"} 40.0
"""


def test_parse_keys_by_name_and_sorted_labels():
    samples = promtext.parse(BEFORE)
    assert samples[("model_batch_size_sum", (("model", "mnist-lstm"),))] == 5.0
    key = (
        "bentoml_service_adaptive_batch_size_count",
        (("method_name", "predict_items"), ("service_name", "digits"), ("worker_index", "1")),
    )
    assert samples[key] == 5.0


def test_histogram_delta_for_one_model():
    d = promtext.histogram_delta(promtext.parse(BEFORE), promtext.parse(AFTER), "model_batch_size", {"model": "mnist-lstm"})
    assert (d.count, d.total) == (100.0, 1600.0)
    assert d.mean == pytest.approx(16.0)


def test_histogram_delta_sums_matching_series_and_counts_new_ones_from_zero():
    before, after = promtext.parse(BEFORE), promtext.parse(AFTER)
    d = promtext.histogram_delta(before, after, "bentoml_service_adaptive_batch_size", {"method_name": "predict_items"})
    # worker 1: +50 batches, +800 rows; worker 2 appeared: 10 batches, 40 rows
    assert (d.count, d.total) == (60.0, 840.0)
    everything = promtext.histogram_delta(before, after, "model_batch_size")
    assert everything.count == 100 + 4 + 1


def test_histogram_delta_restart_counts_from_zero():
    before = promtext.parse('model_batch_size_count{model="m"} 50.0\nmodel_batch_size_sum{model="m"} 500.0\n')
    after = promtext.parse('model_batch_size_count{model="m"} 4.0\nmodel_batch_size_sum{model="m"} 8.0\n')
    d = promtext.histogram_delta(before, after, "model_batch_size")
    assert (d.count, d.total, d.mean) == (4.0, 8.0, 2.0)


def test_histogram_delta_without_observations_has_no_mean():
    d = promtext.histogram_delta({}, promtext.parse(BEFORE), "model_batch_size", {"model": "absent"})
    assert d.count == 0 and d.mean is None


def test_label_values():
    assert promtext.label_values(promtext.parse(AFTER), "model_batch_size_count", "model") == [
        "fashion-vae2-decoder",
        "mnist-gru",
        "mnist-lstm",
    ]
