"""String tensors in the stand-in's REST JSON: ``{"b64": ...}`` values in and out.

The exported IMDB model has no string input or output, so the conformance suite cannot reach
this part of TF Serving's JSON mapping over a socket; these tests drive the stand-in's own
request and response code with string signatures instead.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from standin.rest_json import request_tensors, response_body
from standin.servable import TensorSpec
from standin.status import ServingError
from standin.tensors import DT_INT32, DT_STRING

TEXT = {"text": TensorSpec(DT_STRING, None, (None,))}
IDS = {"ids": TensorSpec(DT_INT32, np.dtype(np.int32), (None,))}
RAW = b"\x00\xffbinary"


def test_b64_objects_and_plain_strings_become_bytes():
    doc = {"instances": [{"b64": base64.b64encode(RAW).decode()}, "plain"]}
    arrays, rows = request_tensors(doc, TEXT, "")
    assert rows is True
    assert arrays["text"].tolist() == [RAW, b"plain"]


@pytest.mark.parametrize(
    ("value", "specs", "message"),
    [
        ({"b64": "aGk="}, IDS, "Type: Object is not of expected type: int32"),
        ({"b64": "not base64!"}, TEXT, "Unable to base64 decode"),
        ({"b64": "aGk=", "x": 1}, TEXT, "not formatted correctly for base64 data"),
    ],
)  # fmt: skip
def test_bad_b64_values_are_refused(value, specs, message):
    name = next(iter(specs))
    with pytest.raises(ServingError) as caught:
        request_tensors({"inputs": {name: [value]}}, specs, "")
    assert message in caught.value.message


def test_string_outputs_named_bytes_are_written_as_b64():
    outputs = {
        "label": np.array([b"pos", b"neg"], dtype=object),
        "raw_bytes": np.array([RAW, b"x"], dtype=object),
    }
    body = json.loads(response_body(outputs, {"label": DT_STRING, "raw_bytes": DT_STRING}, True))
    assert body == {
        "predictions": [
            {"label": "pos", "raw_bytes": {"b64": base64.b64encode(RAW).decode()}},
            {"label": "neg", "raw_bytes": {"b64": "eA=="}},
        ]
    }
