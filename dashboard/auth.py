"""Dashboard users: argon2id password hashes in a JSON file, and the signed-in user's scope.

The file (``DASHBOARD_USERS_FILE``, default ``<DATA_DIR>/dashboard_users.json``) lists each
user's role and, for tenant staff, their tenant. There is no built-in user or default
password: ``python -m dashboard create-demo-users`` writes demo users with random passwords.
Sessions, CSRF, throttling and headers are Flask extensions, wired in ``dashboard.app``.
"""

from __future__ import annotations

import base64
import dataclasses
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
from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError
from flask_login import UserMixin
from pydantic import SecretStr

from dashboard.scope import Role, Scope, ScopeError
from settings import Settings

USERS_FILE = "dashboard_users.json"
SECRET_FILE = "dashboard_secret_key"
# OWASP's minimum for argon2id (19 MiB, 2 passes, 1 lane): ~20 ms a check, one core.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)


def hash_password(password: str) -> str:
    """Encode ``password`` as an argon2id hash with a fresh salt."""
    return _HASHER.hash(password)


def verify_password(password: str, encoded: str) -> bool:
    """Check ``password`` against an encoded hash (argon2id, or the scrypt of earlier versions)."""
    if encoded.startswith("scrypt$"):
        _, n, r, p, salt, digest = encoded.split("$")
        expected = base64.b64decode(digest)
        candidate = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
        return hmac.compare_digest(candidate, expected)
    try:
        return _HASHER.verify(encoded, password)
    except VerifyMismatchError:
        return False


def needs_rehash(encoded: str) -> bool:
    """Whether a hash is weaker than what ``hash_password`` writes now."""
    return encoded.startswith("scrypt$") or _HASHER.check_needs_rehash(encoded)


# Checked when the username is unknown, so a miss costs as long as a wrong password.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class User(UserMixin):
    """One dashboard account as the users file holds it."""

    username: str
    role: Role
    password_hash: str
    tenant_id: str | None = None

    def scope(self) -> Scope:
        """What this user may see."""
        return Scope(self.username, self.role, self.tenant_id)

    def get_id(self) -> str:
        """The session's key: a new password (or a deleted user) ends every session of the old."""
        fingerprint = hashlib.sha256(self.password_hash.encode()).hexdigest()[:16]
        return f"{fingerprint}:{self.username}"


class UserStore:
    """The users file, re-read when it changes on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
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
        """The user if the password matches, else None; a weak old hash is rewritten now."""
        user = self.users().get(username)
        if user is None:
            verify_password(password, _DUMMY_HASH)
            return None
        if not verify_password(password, user.password_hash):
            return None
        if needs_rehash(user.password_hash):
            user = dataclasses.replace(user, password_hash=hash_password(password))
            with self._write_lock:
                write_users(self.path, {**self.users(), username: user}.values())
        return user

    def load(self, user_id: str) -> User | None:
        """The user a session names, if its password is still the one it signed in with."""
        user = self.users().get(user_id.partition(":")[2])
        return user if user is not None and hmac.compare_digest(user.get_id(), user_id) else None


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


def write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)


def write_users(path: Path, users: Iterable[User]) -> None:
    """Write the users file atomically, readable by its owner only."""
    fields = ("username", "role", "tenant_id", "password_hash")
    payload = {"users": [{name: getattr(u, name) for name in fields} for u in users]}
    write_private(path, json.dumps(payload, indent=2) + "\n")


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


def users_file(settings: Settings) -> Path:
    """The users file: ``DASHBOARD_USERS_FILE``, else ``users.json`` in the data folder."""
    return settings.dashboard_users_file or settings.data_dir / USERS_FILE


def secret_key(data_dir: Path, configured: SecretStr | None = None) -> str:
    """The signing key (CSRF tokens): ``configured`` (``DASHBOARD_SECRET_KEY``), else one
    generated once and kept."""
    if configured is not None:
        return configured.get_secret_value()
    path = data_dir / SECRET_FILE
    if not path.exists():
        write_private(path, secrets.token_hex(32))
    return path.read_text().strip()


def current_scope() -> Scope:
    """The scope the request gate resolved for this request; refuse if there is none."""
    scope = flask.g.get("scope")
    if not isinstance(scope, Scope):
        raise ScopeError("not signed in")
    return scope
