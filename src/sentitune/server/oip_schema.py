"""What the Open Inference Protocol routes publish in the OpenAPI schema: their request
bodies, the header of the binary extension, and every status they answer with.

The infer body is read by hand (it may be JSON followed by binary tensor data), so FastAPI
cannot derive its schema: it is written out here, with the server's own limits, as strict
as the server is. One rule no JSON schema can state: `shape` must hold exactly the number
of texts sent (a 400 otherwise).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from sentitune.server.models import NOT_BLANK
from sentitune.server.settings import ServeSettings

HEADER_LENGTH = "Inference-Header-Content-Length"  # the binary tensor extension's header

_MEANINGS = {
    400: "malformed request",
    401: "missing or wrong API key",
    404: "unknown model, version or route",
    405: "method not allowed here (see the Allow header)",
    413: "request body over the byte limit",
    415: "a content type the route does not take",
    422: "a text empty, too long, or too many texts",
    503: "not ready, or overloaded: retry after the Retry-After header's seconds",
}


class OipErrorBody(BaseModel):
    error: str = Field(description="what was wrong")


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """FastAPI `responses` for these statuses, each with the protocol's `{"error": ...}`."""
    return {code: {"model": OipErrorBody, "description": _MEANINGS[code]} for code in codes}


def infer_responses() -> dict[int | str, dict[str, Any]]:
    """The infer route's answers: JSON, or JSON then binary outputs when asked for."""
    binary = {"type": "string", "format": "binary",
              "description": f"the JSON answer ({HEADER_LENGTH} bytes long), then the outputs "
                             "asked for as binary, in order"}
    return {200: {"description": "the outputs, in input order",
                  "content": {"application/octet-stream": {"schema": binary}}},
            **errors(400, 401, 413, 415, 422, 503)}


def infer_openapi(settings: ServeSettings, input_name: str, outputs: list[str]) -> dict:
    """`openapi_extra` of the infer route: its body (JSON, or JSON then binary data)."""
    text = {"type": "string", "minLength": 1, "maxLength": settings.max_text_chars,
            "pattern": NOT_BLANK}
    flag = {"type": "boolean"}
    tensor = {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string", "enum": [input_name]},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0},
                      "description": "holds exactly the number of texts in data"},
            "datatype": {"type": "string", "enum": ["BYTES"]},
            "data": {"type": "array", "items": text, "minItems": 1,
                     "maxItems": settings.max_texts_per_request},
            # Binary data comes as application/octet-stream, not in a JSON body.
            "parameters": {"type": "object", "not": {"required": ["binary_data_size"]}},
        },
    }
    wanted = {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string", "enum": outputs},
                       "parameters": {"type": "object",
                                      "properties": {"binary_data": flag}}},
    }
    request = {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object", "properties": {"binary_data_output": flag}},
            "inputs": {"type": "array", "items": tensor, "minItems": 1, "maxItems": 1},
            "outputs": {"type": "array", "items": wanted},
        },
    }
    binary = {"type": "string", "format": "binary",
              "description": f"the JSON request ({HEADER_LENGTH} bytes long; its tensor's "
                             "parameters give binary_data_size), then each text as a 4-byte "
                             "little-endian length and its UTF-8 bytes"}
    return {
        "parameters": [{"name": HEADER_LENGTH, "in": "header", "required": False,
                        "description": "binary tensor extension: the length of the JSON part",
                        "schema": {"type": "string", "pattern": "^[0-9]+$"}}],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": request},
            "application/octet-stream": {"schema": binary},
        }},
    }


def repository_index_openapi() -> dict:
    """`openapi_extra` of Triton's repository index: an optional `{"ready": bool}`."""
    return {"requestBody": {"required": False, "content": {"application/json": {"schema": {
        "type": "object", "properties": {"ready": {"type": "boolean"}}}}}}}
