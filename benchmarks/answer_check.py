"""What judging one answer costs the generator: CPU µs per answer, REST and gRPC, IMDB-shaped.

Every answer a Locust user gets is checked (tfsload.generator.answers); this measures that
check in-process, where a shared machine's noise matters least (each figure is the best of
``--repeats`` timings of ``--number`` calls): an answer already found valid (recognised by its
bytes), the same answer checked afresh, and taking the next request of a payload. With
``--baseline FILE`` (an ``answers.py`` of an earlier revision, whose module functions
``rest_failure(status, body, rows)`` and ``grpc_reply_failure(reply, rows)`` judged the IMDB
answer alone) the same answers go through that one too, interleaved, and the table gives the
ratio.

    git show 92151e3:tfsload/generator/answers.py > /tmp/answers_before.py
    .venv/bin/python benchmarks/answer_check.py --baseline /tmp/answers_before.py
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import timeit
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tfsload.core import protos
from tfsload.core.run_spec import Workload
from tfsload.generator.answers import AnswerCheck
from tfsload.generator.payload import build_payload
from tfsload.generator.signature import Signature, TensorSpec
from tfsload.generator.tensors import tensor_proto

IMDB = Signature(
    "serving_default",
    {"input_1": TensorSpec("DT_INT32", (-1, 200))},
    {"output_0": TensorSpec("DT_FLOAT", (-1, 2))},
    "benchmark",
)
ROWS = [[0.3, 0.7], [0.25, 0.75], [0.5, 0.5], [0.125, 0.875], [0.6, 0.4]]


def answers() -> tuple[bytes, bytes]:
    """(REST body, serialized PredictResponse) of a 5x2 probabilities answer."""
    rest = json.dumps({"predictions": ROWS}, indent=4).encode()
    response = protos.load().PredictResponse()
    response.outputs["output_0"].CopyFrom(tensor_proto(np.array(ROWS), "DT_FLOAT"))
    return rest, response.SerializeToString()


def best_us(call, number: int, repeats: int) -> float:
    return min(timeit.repeat(call, number=number, repeat=repeats)) / number * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=20000, help="calls per timing")
    parser.add_argument("--repeats", type=int, default=7, help="timings; the best is kept")
    parser.add_argument("--baseline", type=Path, help="answers.py of an earlier revision")
    args = parser.parse_args()
    rest, grpc = answers()
    check = AnswerCheck(IMDB.outputs, "probabilities")
    baseline = None
    if args.baseline:
        spec = importlib.util.spec_from_file_location("answers_baseline", args.baseline)
        baseline = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(baseline)
    rows_file = Path("/tmp/answer_check_rows.json")
    rows_file.write_text(json.dumps([[0] * 190 + list(range(10))] * 5))
    payload = build_payload(Workload(instances_file=str(rows_file)), IMDB)

    def fresh(method, answer_bytes):
        """A check that never recognises the answer: a new checker's set is empty."""

        def call():
            checker = AnswerCheck(IMDB.outputs, "probabilities")
            return getattr(checker, method)(*answer_bytes)

        return call

    cases = {
        "REST, known valid": (
            lambda: check.rest_failure(200, rest, 5),
            (lambda: baseline.rest_failure(200, rest, 5)) if baseline else None,
        ),
        "REST, checked afresh": (
            fresh("_rest_failure", (200, rest, 5, False)),
            (lambda: baseline._rest_failure(200, rest, 5)) if baseline else None,
        ),
        "gRPC, known valid": (
            lambda: check.grpc_reply_failure(grpc, 5),
            (lambda: baseline.grpc_reply_failure(grpc, 5)) if baseline else None,
        ),
        "gRPC, checked afresh": (
            fresh("_grpc_reply_failure", (grpc, 5)),
            (lambda: baseline._grpc_reply_failure(grpc, 5)) if baseline else None,
        ),
        "next request of the payload": (payload.next, None),
    }
    check.rest_failure(200, rest, 5)
    check.grpc_reply_failure(grpc, 5)
    if baseline:
        baseline.rest_failure(200, rest, 5)
        baseline.grpc_reply_failure(grpc, 5)
    print(f"Best of {args.repeats} timings of {args.number} calls, µs per call:\n")
    print("| case | now | baseline | now/baseline |")
    print("|---|---:|---:|---:|")
    for name, (now_call, before_call) in cases.items():
        now_us = before_us = None
        for _ in range(2):  # interleaved: now, baseline, now, baseline
            value = best_us(now_call, args.number, args.repeats)
            now_us = value if now_us is None else min(now_us, value)
            if before_call:
                value = best_us(before_call, args.number, args.repeats)
                before_us = value if before_us is None else min(before_us, value)
        before = f"{before_us:.2f}" if before_us else ""
        ratio = f"{now_us / before_us:.2f}" if before_us else ""
        print(f"| {name} | {now_us:.2f} | {before} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
