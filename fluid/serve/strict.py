"""Strict request bodies for the server: every body-taking route refuses what it cannot read with a 4xx.

* :func:`strict_json_loads` decodes a JSON body as RFC 8259 JSON only: UTF-8 text, no ``NaN``/``Infinity``, no
  number that overflows a float, no lone surrogate (``"\\ud800"``) in any string or key, at most
  :data:`MAX_DEPTH` levels of nesting. Anything else raises :class:`BadJSONBody` with a one-line reason.
* :class:`StrictBodyRoute` (the app's route class) answers a body of the wrong media type with 415 and a JSON
  body that :func:`strict_json_loads` refuses with 400, both as ``{"detail": "..."}``.
* :func:`validation_error_handler` renders FastAPI's 422 with the offending input made JSON-safe (bytes,
  surrogates, NaN), where FastAPI's default handler would itself fail with a 500.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, params
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

__all__ = [
    "FORM_MEDIA_TYPES",
    "JSON_MEDIA_TYPE",
    "MAX_DEPTH",
    "BadJSONBody",
    "StrictBodyRoute",
    "find_lone_surrogate",
    "lone_surrogate_message",
    "strict_json_loads",
    "validation_error_handler",
]

JSON_MEDIA_TYPE = "application/json"
FORM_MEDIA_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
_NOT_FINITE = "NaN/Infinity are not allowed in JSON"
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # the only way a lone surrogate gets into decoded UTF-8 JSON
#: Most levels of nested arrays/objects in a JSON body (the API needs 2): deeper bodies are refused, as the
#: validation error for them could not be rendered.
MAX_DEPTH = 32


class BadJSONBody(ValueError):
    """A request body that is not strict JSON; the message is the one-line reason (the 400's detail)."""


def _short(token: str, limit: int = 24) -> str:
    return token if len(token) <= limit else f"{token[:limit]}... ({len(token)} characters)"


def _refuse_constant(token: str):
    raise BadJSONBody(f"{_NOT_FINITE} (found {token})")


def _finite_float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):  # 1e999999 would silently become inf
        raise BadJSONBody(f"number {_short(token)} is out of range ({_NOT_FINITE})")
    return value


def _first_surrogate(text: str) -> int | None:
    if text.isascii():  # O(1): most strings (base64 images included)
        return None
    match = _SURROGATE.search(text)
    return ord(match.group()) if match else None


def find_lone_surrogate(value: Any) -> tuple[tuple, int, bool] | None:
    """The first lone surrogate (U+D800..U+DFFF) in a decoded JSON value: ``(path, code point, in_key)``, or
    None. ``json`` joins a valid escaped pair (``"\\ud83d\\ude00"``) into one character, so any surrogate left
    in a string is unpaired. Walks iteratively (no recursion limit); an object's keys before its values."""
    stack: list[tuple[tuple, Any]] = [((), value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            code_point = _first_surrogate(item)
            if code_point is not None:
                return path, code_point, False
        elif isinstance(item, dict):
            for key in item:
                code_point = _first_surrogate(key)
                if code_point is not None:
                    return path, code_point, True
            stack.extend(((*path, key), child) for key, child in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend(((*path, index), child) for index, child in reversed(list(enumerate(item))))
    return None


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays/objects nest more than ``limit`` levels (iterative: containers only)."""
    stack = [(value, 1)] if isinstance(value, (list, dict)) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (list, dict)))
    return False


def lone_surrogate_message(path: tuple, code_point: int, in_key: bool = False) -> str:
    """E.g. ``text contains a lone surrogate (U+D800) at item 0``."""
    if in_key:
        what, where = "a key", path
    elif path and isinstance(path[-1], str):
        what, where = _short(repr(path[-1])[1:-1]), path[:-1]
    else:
        what, where = "a string", path
    parts = [f"item {step}" if isinstance(step, int) else f"key {_short(repr(step))}" for step in where]
    return f"{what} contains a lone surrogate (U+{code_point:04X})" + (f" at {', '.join(parts)}" if parts else "")


def strict_json_loads(body: bytes) -> Any:
    """Decode a request body as strict JSON; raises :class:`BadJSONBody` with a one-line reason otherwise."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadJSONBody(f"request body is not valid JSON: it is not UTF-8 (byte 0x{body[error.start]:02x} at "
                          f"position {error.start})") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except BadJSONBody:
        raise
    except json.JSONDecodeError as error:
        raise BadJSONBody(f"request body is not valid JSON: {error}") from None
    except ValueError:  # int(): more digits than sys.get_int_max_str_digits() (4300 by default)
        raise BadJSONBody("request body is not valid JSON: an integer has too many digits") from None
    except RecursionError:
        raise BadJSONBody(f"request body is not valid JSON: nested deeper than {MAX_DEPTH} levels") from None
    # the walks below cost nothing for ordinary bodies: each runs only when the text could need it
    if text.count("[") + text.count("{") > MAX_DEPTH and _deeper_than(value, MAX_DEPTH):
        raise BadJSONBody(f"request body is not valid JSON: nested deeper than {MAX_DEPTH} levels")
    surrogate = find_lone_surrogate(value) if _SURROGATE_ESCAPE.search(text) else None
    if surrogate is not None:
        raise BadJSONBody(lone_surrogate_message(*surrogate))
    return value


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


class _StrictJSONRequest(Request):
    async def json(self) -> Any:  # FastAPI decodes a JSON body through this
        if not hasattr(self, "_json"):
            try:
                self._json = strict_json_loads(await self.body())
            except BadJSONBody as error:
                raise HTTPException(400, str(error)) from None
        return self._json


class StrictBodyRoute(APIRoute):
    """Route class: a route with a JSON body takes only ``application/json`` (or ``application/*+json``)
    decoded by :func:`strict_json_loads`; a route with form fields only the two form media types. Any other
    media type, or none, is a 415."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        body_field = getattr(self, "body_field", None)
        if body_field is None:
            return handler
        is_form = isinstance(body_field.field_info, params.Form)
        accepted = " or ".join(FORM_MEDIA_TYPES) if is_form else JSON_MEDIA_TYPE

        def media_type_ok(media_type: str) -> bool:
            if is_form:
                return media_type in FORM_MEDIA_TYPES
            return media_type == JSON_MEDIA_TYPE or (media_type.startswith("application/")
                                                     and media_type.endswith("+json"))

        async def strict_handler(request: Request) -> Response:
            media_type = _media_type(request)
            if not media_type_ok(media_type):
                got = _short(repr(media_type), 80) if media_type else "no Content-Type"
                raise HTTPException(415, f"{request.method} {request.url.path} takes {accepted}; got {got}")
            return await handler(_StrictJSONRequest(request.scope, request.receive))

        return strict_handler


def _json_safe(value: Any) -> Any:
    """Strings with surrogates escaped, non-finite floats as text: what ``JSONResponse`` can always render."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {_json_safe(key): _json_safe(child) for key, child in value.items()}
    if isinstance(value, list):
        return [_json_safe(child) for child in value]
    return value


async def validation_error_handler(_request: Request, error: RequestValidationError) -> JSONResponse:
    """FastAPI's standard 422 (``detail`` is the list of errors), rendered JSON-safe."""
    detail = jsonable_encoder(error.errors(), custom_encoder={bytes: lambda raw: raw.decode("utf-8", "replace")})
    return JSONResponse(status_code=422, content={"detail": _json_safe(detail)})
