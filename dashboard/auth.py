"""Dashboard users: salted scrypt password hashes in a JSON file, sign-in, and the session's scope.

The file (``DASHBOARD_USERS_FILE``, default ``<DATA_DIR>/dashboard_users.json``) lists each
user's role and, for tenant staff, their tenant. There is no built-in user or default
password: ``python -m dashboard create-demo-users`` writes demo users with random passwords.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import flask

from dashboard.scope import Role, Scope, ScopeError

USERS_FILE = "dashboard_users.json"
SECRET_FILE = "dashboard_secret_key"
# scrypt cost: ~50 ms per check on this hardware, so guessing is slow and sign-in is not.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_SESSION_USER = "user"
_SESSION_FINGERPRINT = "auth"
_SESSION_ID = "sid"


def hash_password(password: str, salt: bytes | None = None) -> str:
    """Encode ``password`` as ``scrypt$n$r$p$salt$hash`` with a fresh per-user salt."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    encode = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${encode(salt).decode()}${encode(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """Check ``password`` against an encoded hash in constant time."""
    scheme, n, r, p, salt, digest = encoded.split("$")
    if scheme != "scrypt":
        raise ValueError(f"unknown password hash scheme {scheme!r}")
    candidate = hashlib.scrypt(
        password.encode(),
        salt=base64.b64decode(salt),
        n=int(n),
        r=int(r),
        p=int(p),
        dklen=len(base64.b64decode(digest)),
    )
    return hmac.compare_digest(candidate, base64.b64decode(digest))


# Checked when the username is unknown, so a miss costs as long as a wrong password.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class User:
    """One dashboard account as the users file holds it."""

    username: str
    role: Role
    password_hash: str
    tenant_id: str | None = None

    def scope(self) -> Scope:
        """What this user may see."""
        return Scope(self.username, self.role, self.tenant_id)

    @property
    def fingerprint(self) -> str:
        """Ties a session to the current password: changing it (or deleting the user) signs out."""
        return hashlib.sha256(self.password_hash.encode()).hexdigest()[:16]


class UserStore:
    """The users file, re-read when it changes on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._loaded: tuple[int, dict[str, User]] | None = None

    def users(self) -> dict[str, User]:
        """All users by name; empty when the file does not exist yet."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        with self._lock:
            if self._loaded is None or self._loaded[0] != mtime:
                self._loaded = (mtime, _parse_users(json.loads(self.path.read_text())))
            return self._loaded[1]

    def authenticate(self, username: str, password: str) -> User | None:
        """The user if the password matches, else None."""
        user = self.users().get(username)
        if user is None:
            verify_password(password, _DUMMY_HASH)
            return None
        return user if verify_password(password, user.password_hash) else None


def _parse_users(payload: dict) -> dict[str, User]:
    users = {}
    for entry in payload.get("users", []):
        user = User(
            username=str(entry["username"]),
            role=entry["role"],
            password_hash=str(entry["password_hash"]),
            tenant_id=entry.get("tenant_id"),
        )
        user.scope()  # validates role and tenant together; a bad entry fails loudly
        users[user.username] = user
    return users


def write_users(path: Path, users: Iterable[User]) -> None:
    """Write the users file atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "users": [
            {
                "username": u.username,
                "role": u.role,
                "tenant_id": u.tenant_id,
                "password_hash": u.password_hash,
            }
            for u in users
        ]
    }
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


def create_demo_users(path: Path, tenant_ids: Iterable[str]) -> list[tuple[User, str]]:
    """Write an operator and one staff user per tenant with random passwords; return them."""
    created = []
    for username, role, tenant in [
        ("operator", "operator", None),
        *((f"staff-{t}", "staff", t) for t in sorted(tenant_ids)),
    ]:
        password = secrets.token_urlsafe(12)
        created.append((User(username, role, hash_password(password), tenant), password))
    write_users(path, [user for user, _ in created])
    return created


def secret_key(data_dir: Path) -> str:
    """The session signing key: ``DASHBOARD_SECRET_KEY``, else one generated once and kept."""
    configured = os.environ.get("DASHBOARD_SECRET_KEY")
    if configured:
        return configured
    path = data_dir / SECRET_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
        os.replace(tmp, path)
    return path.read_text().strip()


class SignedOut:
    """Session ids signed out in this process, until the cookie would have expired anyway.

    Sessions live in signed cookies; without this, a copy of the cookie taken before sign-out
    would keep working until it expired.
    """

    def __init__(self, lifetime: dt.timedelta) -> None:
        self._lifetime = lifetime
        self._lock = threading.Lock()
        self._until: dict[str, dt.datetime] = {}

    def add(self, session_id: str) -> None:
        """Refuse ``session_id`` from now on."""
        now = dt.datetime.now(dt.UTC)
        with self._lock:
            self._until = {sid: until for sid, until in self._until.items() if until > now}
            self._until[session_id] = now + self._lifetime

    def __contains__(self, session_id: object) -> bool:
        with self._lock:
            return session_id in self._until


def sign_in(user: User) -> None:
    """Start a fresh session for ``user``."""
    flask.session.clear()
    flask.session[_SESSION_USER] = user.username
    flask.session[_SESSION_FINGERPRINT] = user.fingerprint
    flask.session[_SESSION_ID] = secrets.token_urlsafe(16)
    flask.session.permanent = True


def sign_out(signed_out: SignedOut) -> None:
    """Forget the session, and refuse its cookie should it come back."""
    session_id = flask.session.get(_SESSION_ID)
    if isinstance(session_id, str):
        signed_out.add(session_id)
    flask.session.clear()


def session_user(store: UserStore, signed_out: SignedOut) -> User | None:
    """The signed-in user, if the session is live and its password has not changed since."""
    username = flask.session.get(_SESSION_USER)
    if not isinstance(username, str) or flask.session.get(_SESSION_ID) in signed_out:
        return None
    user = store.users().get(username)
    if user is None or not hmac.compare_digest(
        user.fingerprint, str(flask.session.get(_SESSION_FINGERPRINT, ""))
    ):
        return None
    return user


def current_scope() -> Scope:
    """The scope the request gate resolved for this request; refuse if there is none."""
    scope = flask.g.get("scope")
    if not isinstance(scope, Scope):
        raise ScopeError("not signed in")
    return scope
