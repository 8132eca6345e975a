"""The stock baselines of benchmarks/generator_ceiling.py: what a Locust user writes by hand.

StockRestUser is a FastHttpUser posting a body encoded once, without checking the answer.
StockGrpcUser follows Locust's gRPC example: init_gevent, one channel per user, a stub that
serializes a pre-built PredictRequest on each call, and one request event per call. Both send
the benchmark's request (generator_ceiling.instance_rows); neither validates or records
anything beyond Locust.
"""

import json
import sys
import time
from pathlib import Path

import grpc
import grpc.experimental.gevent
from locust import User, constant, task
from locust.contrib.fasthttp import FastHttpUser

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.generator_ceiling import PREDICT_PATH, instance_rows, predict_messages
from tfsload.core import protos  # message classes without TensorFlow

grpc.experimental.gevent.init_gevent()

BODY = json.dumps({"signature_name": "serving_default", "instances": instance_rows()}).encode()
MESSAGES = protos.load()
REQUEST = MESSAGES.PredictRequest.FromString(predict_messages()[0])


class StockRestUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def predict(self):
        self.client.post(
            "/v1/models/model:predict", data=BODY, headers={"Content-Type": "application/json"}
        )


class StockGrpcUser(User):
    wait_time = constant(0)

    def on_start(self):
        self.channel = grpc.insecure_channel(self.host.removeprefix("grpc://"))
        self.stub = self.channel.unary_unary(
            "/" + PREDICT_PATH,
            request_serializer=MESSAGES.PredictRequest.SerializeToString,
            response_deserializer=MESSAGES.PredictResponse.FromString,
        )

    def on_stop(self):
        self.channel.close()

    @task
    def predict(self):
        start = time.perf_counter()
        length, error = 0, None
        try:
            length = self.stub(REQUEST, timeout=10).ByteSize()
        except grpc.RpcError as exc:
            error = exc
        self.environment.events.request.fire(
            request_type="gRPC",
            name="Predict",
            response_time=(time.perf_counter() - start) * 1000,
            response_length=length,
            exception=error,
            context={},
        )
