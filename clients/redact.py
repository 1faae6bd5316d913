"""Keeps credentials out of logs and error messages: known token shapes plus registered secrets."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

MASK = "[REDACTED]"

# Token shapes we know about; a secret of another shape must be registered at runtime.
_PATTERNS = (
    # "Authorization: Bearer x", "X-CC-API-Key: x", "client_secret=x", '"partner_secret": "x"'
    re.compile(
        r"(?i)((?:authorization|x-[a-z0-9-]*api-key|api[_-]?key|client[_-]?secret|"
        r"partner[_-]?secret|secret|access[_-]?token|jwt[_-]?token|token|password)"
        r"""["']?\s*[:=]\s*["']?(?:bearer\s+|basic\s+)?)[^\s"',;}&]+"""
    ),
    re.compile(r"\btc_token_[A-Za-z0-9_\-]+"),
    re.compile(r"\bduffel_(?:test|live)_[A-Za-z0-9_\-]+"),
    re.compile(r"\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"),
    re.compile(r"\btest_cc_api_key_[A-Za-z0-9_\-]+"),
)
# Short values (e.g. "1") would mask unrelated text; real secrets are longer.
_MIN_SECRET_LENGTH = 6

_secrets: set[str] = set()
_secret_pattern: re.Pattern[str] | None = None
_lock = threading.Lock()


def register_secret(*values: str | None) -> None:
    """Remember secret values (from settings or issued at runtime) so they are always masked."""
    global _secret_pattern
    fresh = {v for v in values if v and len(v) >= _MIN_SECRET_LENGTH} - _secrets
    if not fresh:
        return
    with _lock:
        _secrets.update(fresh)
        # Longest first so a secret that contains another is masked whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        _secret_pattern = re.compile("|".join(map(re.escape, ordered)))


def redact(text: str) -> str:
    """``text`` with every known secret and token shape replaced by a mask."""
    pattern = _secret_pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    for token_shape in _PATTERNS:
        if token_shape.groups:
            text = token_shape.sub(lambda m: m.group(1) + MASK, text)
        else:
            text = token_shape.sub(MASK, text)
    return text


def redact_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers safe to log: credential-bearing ones masked entirely."""
    sensitive = ("authorization", "cookie", "api-key", "apikey", "token", "secret")
    return {
        name: MASK if any(word in name.lower() for word in sensitive) else redact(value)
        for name, value in headers
    }


class RedactingFilter(logging.Filter):
    """A logging filter that rewrites each record's message with secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # Render the traceback now, masked, so handlers never format the raw exception.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def get_logger(name: str) -> logging.Logger:
    """A logger of this package with the redacting filter attached (idempotent)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
    return logger


def install_redaction(handler: logging.Handler | None = None) -> None:
    """Mask secrets in every record a handler emits (default: every root handler).

    Logger filters only see records logged on that logger; a handler filter also covers
    third-party loggers (httpx, httpcore) whose records propagate to it.
    """
    handlers = [handler] if handler else logging.getLogger().handlers
    for target in handlers:
        if not any(isinstance(f, RedactingFilter) for f in target.filters):
            target.addFilter(RedactingFilter())
