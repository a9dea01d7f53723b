"""The per-job shared secret: where it is read from, and the handshake proof built on it.

Design note
-----------
The secret is never taken from argv (any local user can read another's command line in
``/proc``); it comes from a file or from a named environment variable. This module does not
read ``os.environ`` itself: the caller passes the environment mapping in, so that only the
CLI layer touches the process environment.

The proof is ``hex(HMAC-SHA256(secret, nonce + run_id))``. The nonce is fresh per
connection, so a recorded proof cannot be replayed; the run id is bound into it, so a
proof for one job is no good for another that shares the secret. The nonce is fixed-length
hex, so the concatenation is unambiguous. Proofs are compared with ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import stat
from collections.abc import Mapping
from pathlib import Path

from rallypoint.store._errors import StoreSecretError

__all__ = ["check_proof", "make_proof", "secret_from_env", "secret_from_file"]

logger = logging.getLogger(__name__)


def secret_from_file(path: str | Path) -> bytes:
    """Read a secret from a file, dropping one trailing newline.

    Warns (through the module logger) when the file is readable by group or others.

    Args:
        path: the file holding the secret.

    Returns:
        The secret bytes.

    Raises:
        StoreSecretError: the file cannot be read or is empty.
    """
    try:
        data = Path(path).read_bytes()
        mode = Path(path).stat().st_mode
    except OSError as exc:
        raise StoreSecretError(f"cannot read the store secret from {path}: {exc}") from exc
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        logger.warning("store secret file %s is readable by other users", path)
    return _non_empty(data.removesuffix(b"\n").removesuffix(b"\r"), f"file {path}")


def secret_from_env(name: str, environ: Mapping[str, str]) -> bytes:
    """Read a secret from an environment variable.

    Args:
        name: the variable's name.
        environ: the environment to look in (the caller passes ``os.environ``).

    Returns:
        The secret: the variable's bytes as the process received them (UTF-8, with the
        bytes Python decoded as ``surrogateescape`` given back as they were).

    Raises:
        StoreSecretError: the variable is unset, empty, or not text at all.
    """
    if name not in environ:
        raise StoreSecretError(f"environment variable {name} holding the store secret is not set")
    try:
        secret = environ[name].encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise StoreSecretError(f"environment variable {name} does not hold text") from None
    return _non_empty(secret, f"environment variable {name}")


def make_proof(secret: bytes | None, nonce: str, run_id: str) -> str:
    """Return the handshake proof: hex HMAC-SHA256(secret, nonce + run_id), or "" without one.

    Args:
        secret: the shared secret, or None when the store is open.
        nonce: the server's challenge nonce.
        run_id: the job's run id.
    """
    if secret is None:
        return ""
    message = (nonce + run_id).encode("utf-8")
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def check_proof(secret: bytes | None, nonce: str, run_id: str, proof: str) -> str | None:
    """Check a client's proof in constant time.

    Args:
        secret: the store's secret, or None when the store is open.
        nonce: the nonce this connection was challenged with.
        run_id: the run id the client claimed.
        proof: the proof the client sent.

    Returns:
        None when accepted, else the reason to refuse (it always names the secret).
    """
    if secret is None:
        if proof:
            return "wrong secret: the client sent a proof but this store has no secret"
        return None
    if not proof:
        return "wrong secret: this store requires a secret and the client sent none"
    expected = make_proof(secret, nonce, run_id)
    if not proof.isascii():  # a proof is hex; this also keeps lone surrogates out of encode
        return "wrong secret"
    if not hmac.compare_digest(expected.encode("ascii"), proof.encode("ascii")):
        return "wrong secret"
    return None


def _non_empty(secret: bytes, where: str) -> bytes:
    if not secret:
        raise StoreSecretError(f"the store secret in {where} is empty")
    return secret
