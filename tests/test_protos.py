"""The shipped descriptors of TF Serving's API are exactly those of tensorflow-serving-api.

Locust processes build their message classes from ``tfsload/core/tfserving_descriptors.binpb``
instead of importing TensorFlow. If the pinned ``tensorflow-serving-api`` changes its messages,
this test fails until the file is rebuilt:

    python -m tfsload.core.protos build tfsload/core/tfserving_descriptors.binpb
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2

from tfsload.core import protos


def test_shipped_descriptors_match_tensorflow_serving_api(tmp_path):
    fresh = tmp_path / "descriptors.binpb"
    protos.build(fresh)
    built = descriptor_pb2.FileDescriptorSet.FromString(fresh.read_bytes())
    shipped = descriptor_pb2.FileDescriptorSet.FromString(protos.DEFAULT_PATH.read_bytes())
    assert [f.name for f in shipped.file] == [f.name for f in built.file]
    assert shipped == built


def test_messages_from_the_shipped_file_round_trip_a_predict_request():
    from tensorflow_serving.apis import predict_pb2

    messages = protos.load()
    request = messages.PredictRequest()
    request.model_spec.name = "model"
    request.inputs["x"].dtype = protos.dtype_number("DT_INT32")
    request.inputs["x"].int_val.extend([1, 2, 3])
    theirs = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    assert theirs.model_spec.name == "model" and list(theirs.inputs["x"].int_val) == [1, 2, 3]
