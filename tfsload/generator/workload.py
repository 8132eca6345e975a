"""This process's workload for a run: the signature learned from the servers, the requests built
for it, and how their answers are judged.

Called once per load-generating process before its users start (and by a master that forks
workers, to refuse a bad run before any of them sends), with the user classes the run loads and
their addresses: each server those classes send to is asked for the model's signature, unless
``--no-metadata`` says not to.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tfsload.core.instances import read_instances
from tfsload.core.run_spec import RunSpec
from tfsload.generator.metadata import learn
from tfsload.generator.payload import Payload, build_payload
from tfsload.generator.run_state import Endpoint
from tfsload.generator.signature import Signature

log = logging.getLogger("tfsload")


def describe(signature: Signature) -> str:
    def tensors(specs: dict) -> str:
        return ", ".join(f"{name} {spec.describe()}" for name, spec in specs.items()) or "none"

    return f"inputs {tensors(signature.inputs)}; outputs {tensors(signature.outputs)}"


def prepare(spec: RunSpec, found: dict[type, Endpoint]) -> Payload:
    """The requests for the user classes of ``found`` (class -> endpoint); ConfigError when the
    instances do not fit the signature (or cannot be made without one)."""
    # REST first: where a run has both, its gRPC channels then open only for the load.
    targets = sorted(
        ((cls.protocol, endpoint) for cls, endpoint in found.items()),
        key=lambda target: target[0] != "rest",
    )
    signature = None
    if not spec.workload.no_metadata and targets:
        signature, problems = learn(targets, spec)
        for problem in problems:
            log.warning("tfsload: no model metadata from %s", problem)
        if signature is not None:
            log.info(
                "tfsload: signature %r from %s: %s",
                signature.name,
                signature.source,
                describe(signature),
            )
        elif not spec.workload.generate_instances:
            log.warning(
                "tfsload: requests are sent as the instances file writes them, and answers "
                "get only the checks that need no signature"
            )
    rest = not targets or any(protocol == "rest" for protocol, _ in targets)
    return build_payload(spec.workload, signature, rest)


def check_offline(spec: RunSpec) -> None:
    """What can be checked without asking a server: the instances file (the web UI's start
    form uses this; the signature is asked for when the test starts)."""
    workload = spec.workload
    if not workload.generate_instances:
        read_instances(
            Path(workload.instances_file), workload.rows_per_request, workload.signature_name
        )
