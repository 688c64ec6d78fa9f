from __future__ import annotations

from google.protobuf.message import DecodeError

from contract.protos.inference import grpc_service_pb2 as v2pb
from loadtests.reliability.streaming import stream_messages


def test_stream_messages_put_bad_ones_between_good_ones():
    messages = stream_messages()
    assert messages[0][2] and messages[-1][2]
    assert sum(not good for _, _, good in messages) >= 4
    ids = []
    for name, raw, good in messages:
        try:
            ids.append(v2pb.ModelInferRequest.FromString(raw).id)
        except DecodeError:
            assert not good, name
    assert ids.count("good-1") == 1 and ids.count("good-2") == 1
    assert len(set(ids)) == len(ids)  # answers are matched to requests by id
