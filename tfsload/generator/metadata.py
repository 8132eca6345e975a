"""Ask the servers for the model's signature before any load.

TF Serving answers ``GetModelMetadata`` over gRPC and
``GET /v1/models/<name>[/versions/<n>|/labels/<label>]/metadata`` over REST; both carry the
SavedModel's ``SignatureDefMap``. A load-generating process asks the servers its users will
load, once, before they start, until one answers, through the same transport settings as its
predict calls (TLS, headers), and builds its requests and answer checks from the chosen
signature. A server that
gives no metadata (a gateway that does not route it, a server down, an unknown model) leaves
the run to the instances file, with a warning: the run then measures what happens, failures
included.

The gRPC call goes through the user class's own connection
(:mod:`tfsload.generator.grpc_transport`), so it waits as predict calls do, without blocking
the process's other greenlets (a worker's heartbeat); REST's call uses the process's sockets,
which Locust makes cooperative.
"""

from __future__ import annotations

import http.client
import json
from urllib.parse import quote

from google.protobuf import json_format
from google.protobuf.message import DecodeError

from tfsload.core import headers, protos
from tfsload.core.run_spec import RunSpec, Workload
from tfsload.generator.grpc_transport import CallFailed, GrpcConnection
from tfsload.generator.rest_transport import RestOrigin
from tfsload.generator.run_state import Endpoint
from tfsload.generator.signature import Signature, from_signature_defs, set_version, version_path

SIGNATURE_DEF_FIELD = "signature_def"


class MetadataUnavailable(Exception):
    """The server gave no usable metadata; the text says why, in one line."""


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def fetch_grpc(connection: GrpcConnection, workload: Workload):
    """The SignatureDefMap from ``GetModelMetadata``; MetadataUnavailable says why not."""
    messages = protos.load()
    request = messages.GetModelMetadataRequest()
    request.model_spec.name = workload.model_name
    set_version(request.model_spec, workload)
    request.metadata_field.append(SIGNATURE_DEF_FIELD)
    connection.acquire()
    try:
        reply = connection.call(request.SerializeToString(), protos.METADATA_METHOD.encode())
    except CallFailed as error:
        detail = _first_line(error.details)
        raise MetadataUnavailable(
            f"{error.code_name}: {detail}" if detail else error.code_name
        ) from None
    finally:
        connection.release()
    try:
        response = messages.GetModelMetadataResponse.FromString(reply)
        return messages.SignatureDefMap.FromString(response.metadata[SIGNATURE_DEF_FIELD].value)
    except (DecodeError, KeyError):
        raise MetadataUnavailable("the answer is not a GetModelMetadataResponse") from None


def fetch_rest(origin: RestOrigin, workload: Workload, spec: RunSpec):
    """The SignatureDefMap from ``GET .../metadata``; MetadataUnavailable says why not."""
    path = f"/v1/models/{quote(workload.model_name, safe='')}{version_path(workload)}/metadata"
    if origin.tls is not None:
        connection = http.client.HTTPSConnection(
            origin.host, origin.port, timeout=origin.timeout_s, context=origin.tls
        )
    else:
        connection = http.client.HTTPConnection(origin.host, origin.port, timeout=origin.timeout_s)
    try:
        connection.request("GET", path, headers=dict(headers.resolve(spec.transport.headers)))
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as error:
        raise MetadataUnavailable(f"{type(error).__name__}: {_first_line(str(error))}") from None
    finally:
        connection.close()
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        document = None
    if response.status != 200:
        error = document.get("error") if isinstance(document, dict) else None
        detail = _first_line(error) if isinstance(error, str) else ""
        raise MetadataUnavailable(f"HTTP {response.status}: {detail}" if detail else
                                  f"HTTP {response.status}")  # fmt: skip
    try:
        section = document["metadata"][SIGNATURE_DEF_FIELD]
        return json_format.ParseDict(
            section, protos.load().SignatureDefMap(), ignore_unknown_fields=True
        )
    except (KeyError, TypeError, json_format.ParseError):
        raise MetadataUnavailable("the answer is not TF Serving's model metadata") from None


def learn(targets: list[tuple[str, Endpoint]], spec: RunSpec) -> tuple[Signature | None, list[str]]:
    """Ask the (protocol, endpoint) pairs in turn until one gives the signature: that answer,
    and why the ones asked before gave none. One answer is enough: every class of a run sends
    the same requests, and a server whose model differs shows in its answers' checks."""
    problems: list[str] = []
    for protocol, endpoint in targets:
        address = endpoint.address
        source = f"grpc://{address}" if protocol == "grpc" and "://" not in address else address
        try:
            if protocol == "grpc":
                defs = fetch_grpc(endpoint.connection, spec.workload)
            else:
                defs = fetch_rest(endpoint.connection, spec.workload, spec)
        except MetadataUnavailable as exc:
            problems.append(f"{source}: {exc}")
            continue
        return from_signature_defs(defs, spec.workload, source), problems
    return None, problems
