#!/usr/bin/env python3
"""sigv4-botocore.py: botocore's S3 signer on requests given as JSON lines
(test-sigv4.c writes them), one Authorization header printed a request.

Each request: method, url (no query), params (raw name -> value), body,
signed (payload hashed, else UNSIGNED-PAYLOAD), token (or null), region and
a fixed time (unix seconds). Exit 77 (a skip) when botocore is missing."""
import datetime
import json
import sys
import types

try:
    import botocore.auth as auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
except ImportError:
    print("SKIP: botocore is not installed (Debian: python3-botocore)", file=sys.stderr)
    sys.exit(77)


def sign(req):
    fixed = datetime.datetime.fromtimestamp(req["time"], datetime.timezone.utc).replace(tzinfo=None)

    class Fixed(datetime.datetime):
        @classmethod
        def utcnow(cls):
            return fixed

        @classmethod
        def now(cls, tz=None):
            return fixed if tz is None else fixed.replace(tzinfo=tz)

    # botocore reads the time as datetime.datetime.utcnow() (1.29, Debian 12)
    # or through get_current_datetime() (later): both fixed
    auth.datetime = types.SimpleNamespace(datetime=Fixed, timezone=datetime.timezone,
                                          timedelta=datetime.timedelta)
    if hasattr(auth, "get_current_datetime"):
        auth.get_current_datetime = lambda *a, **k: fixed
    creds = Credentials(req["access_key"], req["secret_key"], req.get("token"))
    r = AWSRequest(method=req["method"], url=req["url"], params=req["params"],
                   data=req["body"].encode(), headers=req.get("headers", {}))
    r.context["client_config"] = types.SimpleNamespace(
        s3={"payload_signing_enabled": bool(req["signed"])})
    auth.S3SigV4Auth(creds, "s3", req["region"]).add_auth(r)
    return r.headers["Authorization"]


for line in open(sys.argv[1]):
    if line.strip():
        print(sign(json.loads(line)))
