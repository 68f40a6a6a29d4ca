"""Schemathesis hooks for openapi/check.sh (loaded through schemathesis.toml).

Schemathesis has no serializer for NDJSON, the batch endpoint's second body
format. The document gives that body as a string (one metric per line), so
it goes on the wire as that text.
"""

import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        # Lone surrogates go out as they are: the API must answer such bytes with a 4xx.
        return value.encode("utf-8", "surrogatepass")
    # A negative case may generate a non-string: send its JSON text.
    return json.dumps(value).encode("utf-8")
