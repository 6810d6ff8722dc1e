#!/usr/bin/env python3
"""A second resource server, in Python, verifying the same keyfleet access tokens.

Debian's python3-jwt (PyJWT) and nothing of keyfleet's: the issuer and the JWKS come from
keyfleet's discovery document, keys from PyJWKClient (which caches the key set for
`lifespan` seconds, 300 by default, and refetches once when a token names an unknown kid).

  AUDIENCE       this server's name in keyfleet's AUDIENCES (required)
  KEYFLEET_URL   where this server reaches keyfleet (default http://lb:8080)
  JWKS_URI, ISSUER  override what discovery says
  JWKS_LIFESPAN  seconds PyJWKClient keeps the key set (default 300, PyJWT's default)
  PATH_PREFIX    default /py; PORT default 4000
"""
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from jwt import PyJWKClient

ENV = os.environ
SERVER = ENV.get("SERVER_ID") or socket.gethostname()
AUDIENCE = ENV.get("AUDIENCE", "")
KEYFLEET_URL = ENV.get("KEYFLEET_URL", "http://lb:8080").rstrip("/")
PREFIX = ENV.get("PATH_PREFIX", "/py").rstrip("/")
PORT = int(ENV.get("PORT", "4000"))

if not AUDIENCE:
    sys.exit("resource-server-python: AUDIENCE is required (this server's name in keyfleet's AUDIENCES)")
try:
    LIFESPAN = float(ENV.get("JWKS_LIFESPAN") or 300)
    assert LIFESPAN > 0
except (ValueError, AssertionError):
    sys.exit("resource-server-python: JWKS_LIFESPAN must be a positive number of seconds")

state = {"issuer": None, "client": None}
lock = threading.Lock()


def log(msg, **fields):
    print(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "server": SERVER, "msg": msg, **fields}), flush=True)


def discover():
    with urllib.request.urlopen(f"{KEYFLEET_URL}/.well-known/openid-configuration", timeout=5) as response:
        config = json.load(response)
    issuer = ENV.get("ISSUER") or config["issuer"]
    jwks_uri = ENV.get("JWKS_URI") or config["jwks_uri"]
    state["client"] = PyJWKClient(jwks_uri, cache_jwk_set=True, lifespan=LIFESPAN, timeout=5)
    state["issuer"] = issuer
    log("ready", issuer=issuer, jwks_uri=jwks_uri, audience=AUDIENCE, lifespan=LIFESPAN, pyjwt=jwt.__version__)


def verify(token):
    """(status, body) for a bearer token."""
    try:
        with lock:  # PyJWKClient's cache is not meant for concurrent refreshes
            key = state["client"].get_signing_key_from_jwt(token)
        payload = jwt.decode(
            token,
            key.key,
            algorithms=["ES256"],
            audience=AUDIENCE,
            issuer=state["issuer"],
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
        return 200, {"user": payload["sub"], "audience": AUDIENCE, "kid": key.key_id, "server": SERVER, "verifier": "python3-jwt"}
    except jwt.PyJWKClientConnectionError as error:
        log("cannot fetch the JWKS", err=str(error))
        return 503, {"error": "token keys unavailable", "code": "ERR_JWKS_UNAVAILABLE"}
    except jwt.PyJWKClientError:
        return 401, {"error": "token refused", "code": "ERR_JWKS_NO_MATCHING_KEY"}
    except jwt.InvalidAudienceError:
        return 401, {"error": "token refused", "code": "ERR_JWT_AUDIENCE"}
    except jwt.ExpiredSignatureError:
        return 401, {"error": "token refused", "code": "ERR_JWT_EXPIRED"}
    except jwt.InvalidTokenError:
        return 401, {"error": "token refused", "code": "ERR_JWT_INVALID"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("cache-control", "no-store")
        self.send_header("x-resource-server", SERVER)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        ready = state["client"] is not None
        if path == f"{PREFIX}/healthz":
            return self.send(200 if ready else 503, {"status": "ok" if ready else "starting", "server": SERVER, "audience": AUDIENCE})
        if not ready:
            return self.send(503, {"error": "not ready: keyfleet not discovered yet", "code": "ERR_NOT_READY"})
        if path != f"{PREFIX}/whoami":
            return self.send(404, {"error": "not found", "code": "ERR_NOT_FOUND"})
        header = (self.headers.get("authorization") or "").strip()
        if not header.startswith("Bearer ") or len(header) > 8192:
            return self.send(401, {"error": 'expected "Authorization: Bearer <token>"', "code": "ERR_NO_TOKEN"})
        self.send(*verify(header[len("Bearer "):].strip()))

    def log_message(self, format, *args):  # one JSON line per problem instead of one per request
        pass


def discover_until_ready():
    attempt = 0
    while state["client"] is None:
        attempt += 1
        try:
            discover()
        except Exception as error:  # keyfleet may start after this server
            if attempt == 1 or attempt % 10 == 0:
                log("waiting for keyfleet discovery", url=KEYFLEET_URL, err=str(error))
            time.sleep(1)


if __name__ == "__main__":
    httpd = ThreadingHTTPServer(("", PORT), Handler)
    httpd.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=httpd.shutdown).start())
    threading.Thread(target=discover_until_ready, daemon=True).start()
    log("listening", port=PORT, prefix=PREFIX)
    httpd.serve_forever()
