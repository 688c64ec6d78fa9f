"""Hostile messages inside one v2 ``ModelStreamInfer`` call: each bad message is answered on the stream
with an ``error_message`` that says what was wrong, the good messages around it are answered in full,
the stream itself ends OK, and the server stays healthy."""

from __future__ import annotations

import random

from .target import MiB, Target

STREAM_METHOD = "/inference.GRPCInferenceService/ModelStreamInfer"


def _infer(id_: str, shape: tuple[int, ...] = (1, 28, 28), datatype: str = "FP32", raw: bytes | None = b"\x00" * 3136) -> bytes:
    from contract.protos.inference import grpc_service_pb2 as v2pb

    r = v2pb.ModelInferRequest(model_name="mnist-lstm", id=id_)
    r.inputs.add(name="images", datatype=datatype, shape=list(shape))
    if raw is not None:
        r.raw_input_contents.append(raw)
    return r.SerializeToString()


# (name, request bytes, whether it is good); ids let each answer be matched to its request.
def stream_messages() -> list[tuple[str, bytes, bool]]:
    nan = b"\x00\x00\xc0\x7f" * 784  # FP32 NaN
    return [
        ("good (first)", _infer("good-1"), True),
        ("undecodable bytes", random.Random(3).randbytes(2000), False),
        ("10^9 rows declared", _infer("rows", shape=(10**9, 28, 28)), False),
        ("raw size mismatch", _infer("size", raw=b"\x00" * 10), False),
        ("NaN values", _infer("nan", raw=nan), False),
        ("unknown datatype", _infer("dtype", datatype="FP99"), False),
        ("good (last)", _infer("good-2"), True),
    ]


def streaming_probe(t: Target) -> None:
    import grpc

    from contract.protos.inference import grpc_service_pb2 as v2pb

    messages = stream_messages()
    options = [("grpc.max_receive_message_length", 16 * MiB)]
    answers: list[v2pb.ModelStreamInferResponse] = []
    code = "OK"
    with grpc.insecure_channel(t.grpc, options=options) as channel:
        call = channel.stream_stream(STREAM_METHOD, request_serializer=None, response_deserializer=v2pb.ModelStreamInferResponse.FromString)
        try:
            answers = list(call(iter([raw for _, raw, _ in messages]), timeout=60))
        except grpc.RpcError as e:
            code = f"{e.code().name}: {e.details()}"
    good = [a for a in answers if not a.error_message]
    bad = [a for a in answers if a.error_message]
    answered = sorted(a.infer_response.id for a in good)
    long = [a.error_message for a in bad if len(a.error_message) > 1000]
    ok, why = t.healthy()
    expected_bad = sum(not g for _, _, g in messages)
    got = (
        f"stream {code}; {len(answers)} answers: {len(good)} good ({', '.join(answered) or '-'}), {len(bad)} errors"
        + (f" ({len(long)} over 1,000 chars)" if long else "")
        + ("" if ok else f"; unhealthy: {why}")
    )
    t.add(
        "gRPC ModelStreamInfer: 5 bad messages between 2 good ones",
        len(messages),
        f"stream OK; the 2 good answered, {expected_bad} error_message answers; server healthy",
        got,
        code == "OK"
        and answered == ["good-1", "good-2"]
        and all(len(a.infer_response.raw_output_contents) or len(a.infer_response.outputs) for a in good)
        and len(bad) == expected_bad
        and not long
        and ok,
    )
    for a in bad:  # each error says what was wrong: print them so the table's reader sees the messages
        print(f"        stream error: {a.error_message[:160]}", flush=True)
