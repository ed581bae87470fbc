"""The KServe V2 / Open Inference Protocol over HTTP/JSON, with Triton's binary tensor extension.

Speaking a standard protocol lets clients that already exist (tritonclient, KServe's SDK, any
tool written for Triton or KServe) call aiaas deployments without an aiaas client. Those clients
send binary tensors by default, so the binary extension is not optional in practice.

This package only translates between bytes and numpy arrays, with no I/O, so that the routes
stay thin and every malformed request can be tested without a server: `decoding` reads a
request body (`json_tensors` the tensors given as JSON data), `encoding` writes the response
bodies; both use orjson, and the standard library where orjson would read or write otherwise
than it (so that what clients see has not changed). It checks that a request is well formed as
a V2 request; whether it fits the model (names, dtypes, ranks, finite values, batch size) is
`aiaas.core.model_inputs.check_inputs`'s job, so that both APIs refuse the same way.

Decisions a client may notice:
- element types are strict: numeric tensors take JSON numbers only (no strings, no booleans),
  integer tensors take integers only, BOOL takes booleans, BYTES takes strings; a value out of
  the datatype's range is refused rather than wrapped or turned into infinity;
- BYTES tensors are text: they decode to `str`, and bytes that are not UTF-8 are refused,
  but for a binary element that is a PNG or JPEG file, kept as `bytes` for an image input
  (`aiaas.core.serving.image_requests`; in JSON an image is base64 text);
- BF16, shared memory and the classification extension are refused as unsupported;
- JSON has no NaN or infinity: a request that uses the non-standard `NaN` tokens is refused,
  and a non-finite float output is sent as `null` in JSON (tritonclient reads it back as NaN);
  binary outputs carry the exact value.
"""

from aiaas.rest.inference_protocol.decoding import (
    INFERENCE_HEADER_CONTENT_LENGTH,
    MAX_BYTE_COUNT_DIGITS,
    MAX_DIMENSION,
    MAX_RANK,
    InferenceRequest,
    RequestedOutput,
    parse_infer_request,
)
from aiaas.rest.inference_protocol.encoding import (
    check_requested_outputs,
    encode_infer_response,
    model_config,
    model_metadata,
    server_metadata,
    v2_datatype,
)
from aiaas.rest.inference_protocol.json_tensors import NUMPY_DTYPES

__all__ = [
    "INFERENCE_HEADER_CONTENT_LENGTH",
    "MAX_BYTE_COUNT_DIGITS",
    "MAX_DIMENSION",
    "MAX_RANK",
    "NUMPY_DTYPES",
    "InferenceRequest",
    "RequestedOutput",
    "check_requested_outputs",
    "encode_infer_response",
    "model_config",
    "model_metadata",
    "parse_infer_request",
    "server_metadata",
    "v2_datatype",
]
