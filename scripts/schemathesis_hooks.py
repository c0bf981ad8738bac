"""Schemathesis hooks for scripts/schemathesis.sh: a bearer token for every generated call.

The token is that of the administrator the script registered (PARLEY_USER, PARLEY_PASSWORD),
so the admin calls are exercised past their 403. A generated call may end the session (a
logout) or lock the account's logins from this address (five wrong `old` passwords to
`POST /api/v1/password`); on a 401 schemathesis asks for a new token, and when the
administrator can no longer log in, a fresh user is registered instead.
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


@schemathesis.auth()
class ParleyAuth:
    def get(self, case, ctx):
        token = _login(ADMIN)
        while token is None:
            name = f"st-fresh-{next(_fresh)}"
            _post("/api/v1/register", {"username": name, "password": PASSWORD})
            token = _login(name)
        return token

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
