"""Schemathesis hooks for scripts/schemathesis.sh: a bearer token for every generated call.

The token is that of the administrator the script registered (PARLEY_USER, PARLEY_PASSWORD),
so the admin calls are exercised past their 403. A generated call may end the session (a
logout, or a password change); on a 401 schemathesis asks for a new token. Five failed
logins lock an account's logins from one address for 15 minutes, so these logins come from
127.0.0.2 (generated ones come from 127.0.0.1), and password changes, whose wrong `old`
counts as a failed login, run as fresh users of their own. Should the administrator still
be locked out, a fresh user stands in.
"""

import http.client
import itertools
import json
import os
import urllib.parse

import schemathesis

BASE = os.environ["PARLEY_URL"]
ADMIN = os.environ["PARLEY_USER"]
PASSWORD = os.environ["PARLEY_PASSWORD"]
_fresh = itertools.count(1)


def _post(path, body):
    # From 127.0.0.2: generated logins (schemathesis sends some as `st-admin`) fail from
    # 127.0.0.1, and five failures lock an account's logins from that address only.
    url = urllib.parse.urlsplit(BASE)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30, source_address=("127.0.0.2", 0))
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data else None)
    finally:
        conn.close()


def _login(name):
    status, body = _post("/api/v1/login", {"username": name, "password": PASSWORD})
    return body["token"] if status == 200 else None


def _fresh_token():
    token = None
    while token is None:
        name = f"st-fresh-{next(_fresh)}"
        _post("/api/v1/register", {"username": name, "password": PASSWORD})
        token = _login(name)
    return token


def _is_password_call(case):
    return case.path == "/api/v1/password"


@schemathesis.auth(cache_by_key=lambda case, ctx: "password" if _is_password_call(case) else "admin")
class ParleyAuth:
    def get(self, case, ctx):
        # `POST /api/v1/password` with a wrong `old` counts as a failed login: it runs as
        # users of its own, so that the administrator never gets locked out.
        if _is_password_call(case):
            return _fresh_token()
        return _login(ADMIN) or _fresh_token()

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
