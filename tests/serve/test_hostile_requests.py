"""Hostile request bodies (issue #24): each gets a 4xx with a JSON ``detail``, never a 500, and the keep-alive
connection survives. The strict JSON decoder of ``fluid/serve/strict.py`` is also tested on its own."""

import http.client
from urllib.parse import urlsplit

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
from fastapi.testclient import TestClient

from fluid.serve import create_app
from fluid.serve.strict import BadJSONBody, strict_json_loads

JSON = "application/json"
FORM_BODY = b'--x\r\nContent-Disposition: form-data; name="text"\r\n\r\nred shirt\r\n--x--\r\n'


def _form(field: str, value: bytes) -> bytes:
    return b'--x\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n--x--\r\n' % (field.encode(), value)


# (id, path, raw body, content type or None for no header, expected status, a phrase of the one-line detail;
#  None: FastAPI's standard 422, whose detail is a list)
CORPUS = [
    # lone surrogates: JSON escapes (a valid escaped pair is accepted: test_what_is_still_accepted)
    ("lone-high-surrogate", "/predict/batch", b'[{"text":"a\\ud800"}]', JSON, 400,
     "text contains a lone surrogate (U+D800) at item 0"),
    ("lone-low-surrogate-item-1", "/predict/batch", b'[{"text":"red"},{"text":"\\udfff b"}]', JSON, 400,
     "lone surrogate (U+DFFF) at item 1"),
    ("reversed-surrogate-pair", "/predict/batch", b'[{"text":"\\udc00\\ud800"}]', JSON, 400, "(U+DC00)"),
    ("surrogate-in-key", "/predict/batch", b'[{"te\\ud800xt":"red"}]', JSON, 400, "a key contains a lone surrogate"),
    ("surrogate-in-image-base64", "/predict/batch", b'[{"image_base64":"\\ud800"}]', JSON, 400,
     "image_base64 contains a lone surrogate"),
    ("surrogate-top-level-string", "/predict/batch", b'"\\ud800"', JSON, 400, "lone surrogate (U+D800)"),
    ("surrogate-as-utf8-bytes", "/predict/batch", b'[{"text":"\xed\xa0\x80"}]', JSON, 400, "not UTF-8"),
    # non-standard literals and overflowing numbers, anywhere in the body
    ("nan-as-text", "/predict/batch", b'[{"text":NaN}]', JSON, 400, "NaN/Infinity are not allowed in JSON"),
    ("infinity-as-text", "/predict/batch", b'[{"text":Infinity}]', JSON, 400, "NaN/Infinity are not allowed"),
    ("minus-infinity-as-text", "/predict/batch", b'[{"text":-Infinity}]', JSON, 400, "found -Infinity"),
    ("nan-top-level", "/predict/batch", b"NaN", JSON, 400, "NaN/Infinity are not allowed"),
    ("nan-in-unknown-key", "/predict/batch", b'[{"text":"red","x":NaN}]', JSON, 400, "NaN/Infinity"),
    ("infinity-nested", "/predict/batch", b'[{"text":"red"},[[Infinity]]]', JSON, 400, "NaN/Infinity"),
    ("huge-exponent", "/predict/batch", b'[{"text":1e999999}]', JSON, 400, "number 1e999999 is out of range"),
    ("huge-negative-exponent-top-level", "/predict/batch", b"-1e999999", JSON, 400, "out of range"),
    ("integer-too-many-digits", "/predict/batch", b'[{"text":' + b"9" * 5000 + b"}]", JSON, 400, "too many digits"),
    ("nested-600-levels", "/predict/batch", b"[" * 600 + b"]" * 600, JSON, 400, "nested deeper than 32 levels"),
    ("nested-objects-600-levels", "/predict/batch", b"[" + b'{"text":' * 600 + b"1" + b"}" * 600 + b"]", JSON, 400,
     "nested deeper than 32 levels"),
    ("nested-100000-levels", "/predict/batch", b"[" * 100_000 + b"]" * 100_000, JSON, 400, "nested deeper than"),
    # not UTF-8, not JSON
    ("not-utf8", "/predict/batch", b"\xff\xfe[", JSON, 400, "not valid JSON: it is not UTF-8 (byte 0xff"),
    ("latin1-text", "/predict/batch", b'[{"text":"\xe8erven\xe9"}]', JSON, 400, "not UTF-8 (byte 0xe8 at position 10)"),
    ("truncated-json", "/predict/batch", b'[{"text": "red"', JSON, 400, "request body is not valid JSON:"),
    ("not-json-at-all", "/predict/batch", b"hello", JSON, 400, "request body is not valid JSON:"),
    ("empty-json-body", "/predict/batch", b"", JSON, 422, None),
    # wrong media type, or none: the JSON endpoint refuses it before reading the body
    ("batch-multipart", "/predict/batch", FORM_BODY, "multipart/form-data; boundary=x", 415, "takes application/json"),
    ("batch-octet-stream", "/predict/batch", b"\x00\x01\xff\xfe", "application/octet-stream", 415,
     "got 'application/octet-stream'"),
    ("batch-text-plain-json", "/predict/batch", b'[{"text":"red"}]', "text/plain", 415, "got 'text/plain'"),
    ("batch-text-plain-binary", "/predict/batch", b"red \xff", "text/plain; charset=latin-1", 415, "text/plain"),
    ("batch-urlencoded", "/predict/batch", b"text=red", "application/x-www-form-urlencoded", 415, "application/json"),
    ("batch-no-content-type-json", "/predict/batch", b'[{"text":"red"}]', None, 415, "got no Content-Type"),
    ("batch-no-content-type-binary", "/predict/batch", b"\xff\x00\xfe", None, 415, "got no Content-Type"),
    # /predict takes a form: other media types are refused, and form fields are checked too
    ("predict-json", "/predict", b'{"text":"red"}', JSON, 415, "multipart/form-data"),
    ("predict-json-nan", "/predict", b'{"text":NaN}', JSON, 415, "got 'application/json'"),
    ("predict-octet-stream", "/predict", b"\x89PNG\xff", "application/octet-stream", 415, "multipart/form-data"),
    ("predict-text-plain", "/predict", b"red shirt", "text/plain", 415, "multipart/form-data"),
    ("predict-no-content-type", "/predict", b"text=red", None, 415, "got no Content-Type"),
    ("predict-multipart-no-boundary", "/predict", b"text=red", "multipart/form-data", 400, "boundary"),
    ("predict-utf7-surrogate-text", "/predict", _form("text", b"+2AA-"),
     "multipart/form-data; boundary=x; charset=utf-7", 400, "text contains a lone surrogate (U+D800)"),
    ("predict-unicode-escape-surrogate-text", "/predict", _form("text", b"\\udc00"),
     "multipart/form-data; boundary=x; charset=unicode_escape", 400, "lone surrogate (U+DC00)"),
    ("predict-utf7-surrogate-top-k", "/predict", _form("top_k", b"+2AA-"),
     "multipart/form-data; boundary=x; charset=utf-7", 422, None),
    ("predict-top-k-nan", "/predict", b"text=red&top_k=NaN", "application/x-www-form-urlencoded", 422, None),
    ("predict-top-k-infinity", "/predict", b"text=red&top_k=Infinity", "application/x-www-form-urlencoded", 422,
     None),
    ("predict-top-k-huge-exponent", "/predict", b"text=red&top_k=1e999999", "application/x-www-form-urlencoded",
     422, None),
]


@pytest.fixture(scope="module")
def client(trained_run_dir):  # the session-wide tiny run of tests/conftest.py
    # raise_server_exceptions=False: a server error is seen as the 500 a real client gets
    with TestClient(create_app(trained_run_dir, max_batch=4), raise_server_exceptions=False) as test_client:
        yield test_client


def _headers(content_type):
    return {} if content_type is None else {"content-type": content_type}


@pytest.mark.parametrize("path, body, content_type, status, phrase",
                         [case[1:] for case in CORPUS], ids=[case[0] for case in CORPUS])
def test_hostile_request_corpus(client, path, body, content_type, status, phrase):
    response = client.post(path, content=body, headers=_headers(content_type))
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    if phrase is None:  # FastAPI's standard validation error
        assert isinstance(detail, list) and detail
    else:  # one line saying what is wrong
        assert isinstance(detail, str) and "\n" not in detail and phrase in detail, detail


def test_what_is_still_accepted(client):
    """Strictness refuses only the hostile: the ordinary requests, and these edge cases, still work."""
    accepted = [
        (b'[{"text":"\\ud83d\\ude00 red shirt"}]', "application/json; charset=utf-8"),  # a valid escaped pair
        ('[{"text":"červené tričko 👕"}]'.encode(), JSON),  # UTF-8 text
        (b'[{"text":"red shirt"}]', "application/vnd.fluid+json"),  # a +json media type
        (b' [ {"text" : "red shirt", "image_base64": null} ] ', "Application/JSON"),
    ]
    for body, content_type in accepted:
        response = client.post("/predict/batch", content=body, headers=_headers(content_type))
        assert response.status_code == 200, (body, response.text)
        assert len(response.json()[0]["labels"]) == 3
    for data in ({"text": "red shirt"}, {"text": "%ED%A0%80"}):  # urlencoded; the second is just text
        assert client.post("/predict", data=data).status_code == 200
    response = client.post("/predict", content=FORM_BODY, headers={"content-type": "multipart/form-data; boundary=x"})
    assert response.status_code == 200, response.text


def test_strict_json_loads():
    assert strict_json_loads(b'[{"text": "a\\u00e9\\ud83d\\ude00", "n": [1, -2.5e10, 1e308, true, null]}]') == [
        {"text": "aé😀", "n": [1, -2.5e10, 1e308, True, None]}]
    for body, phrase in [(b'{"a": {"b": "x\\udbff"}}', "b contains a lone surrogate (U+DBFF) at key 'a'"),
                         (b'{"a": {"b": ["ok", "\\udbff"]}}',
                          "a string contains a lone surrogate (U+DBFF) at key 'a', key 'b', item 1"),
                         (b'{"a": [1, {"\\udfffk": 0}]}', "a key contains a lone surrogate (U+DFFF) at key 'a', item 1"),
                         (b"[1, NaN]", "(found NaN)"), (b"1E400", "number 1E400 is out of range"),
                         (b'"\xc3"', "not UTF-8 (byte 0xc3 at position 1)"), (b"", "not valid JSON: Expecting value")]:
        with pytest.raises(BadJSONBody) as error:
            strict_json_loads(body)
        assert phrase in str(error.value)


def test_openapi_documents_the_refusals(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"400", "413", "415", "422"} <= set(paths["/predict/batch"]["post"]["responses"])
    assert {"400", "413", "415", "422"} <= set(paths["/predict"]["post"]["responses"])


@pytest.mark.slow
def test_hostile_bodies_keep_the_connection_alive(trained_run_dir, serve_process):
    """A real uvicorn process: the whole corpus, then an ordinary request, on one keep-alive connection."""
    with serve_process(trained_run_dir) as base:
        url = urlsplit(base)
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        try:
            connection.request("GET", "/health")
            assert connection.getresponse().read() == b'{"status":"ok"}'
            sock = connection.sock
            for name, path, body, content_type, status, _ in CORPUS:
                connection.request("POST", path, body=body, headers=_headers(content_type))
                response = connection.getresponse()
                response.read()
                assert response.status == status, name
                assert (response.getheader("connection") or "").lower() != "close", name
                assert connection.sock is sock, f"the connection was closed after {name}"
            connection.request("POST", "/predict/batch", body=b'[{"text":"red shirt"}]', headers={
                "content-type": JSON})
            response = connection.getresponse()
            assert response.status == 200 and len(response.read()) > 0
            assert connection.sock is sock
        finally:
            connection.close()
