"""Schemathesis hooks for scripts/schemathesis.sh: a bearer token for every generated call.

The token is that of the administrator the script registered (PARLEY_USER, PARLEY_PASSWORD),
so the admin calls are exercised past their 403. A generated call may end the session (a
logout, or a password change); on a 401 schemathesis asks for a new token. Password changes
run as fresh users of their own (five wrong `old` passwords lock an account's logins from
this address for 15 minutes); should the administrator still be locked out, a fresh user
stands in.
"""

import itertools
import json
import os
import urllib.error
import urllib.request

import schemathesis

BASE = os.environ["PARLEY_URL"]
ADMIN = os.environ["PARLEY_USER"]
PASSWORD = os.environ["PARLEY_PASSWORD"]
_fresh = itertools.count(1)


def _post(path, body):
    req = urllib.request.Request(
        BASE + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, None


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
