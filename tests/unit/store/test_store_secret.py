"""Reading the shared secret, and the HMAC proof of the handshake."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from rallypoint.store import StoreSecretError, secret_from_env, secret_from_file
from rallypoint.store.secret import check_proof, make_proof


def test_secret_from_file_strips_one_newline(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"s3cret\n")
    path.chmod(0o600)
    assert secret_from_file(path) == b"s3cret"


def test_secret_from_missing_or_empty_file(tmp_path: Path) -> None:
    with pytest.raises(StoreSecretError, match="cannot read"):
        secret_from_file(tmp_path / "absent")
    empty = tmp_path / "empty"
    empty.write_bytes(b"\n")
    with pytest.raises(StoreSecretError, match="empty"):
        secret_from_file(empty)


def test_secret_from_env() -> None:
    assert secret_from_env("RP_SECRET", {"RP_SECRET": "abc"}) == b"abc"
    with pytest.raises(StoreSecretError, match="RP_SECRET"):
        secret_from_env("RP_SECRET", {})
    with pytest.raises(StoreSecretError, match="empty"):
        secret_from_env("RP_SECRET", {"RP_SECRET": ""})


def test_proof_is_hmac_of_nonce_and_run_id() -> None:
    expected = hmac.new(b"key", b"n0ncerun", hashlib.sha256).hexdigest()
    assert make_proof(b"key", "n0nce", "run") == expected
    assert make_proof(None, "n0nce", "run") == ""


def test_check_proof() -> None:
    proof = make_proof(b"key", "nonce", "run")
    assert check_proof(b"key", "nonce", "run", proof) is None
    assert check_proof(b"key", "other-nonce", "run", proof) == "wrong secret"
    assert check_proof(b"key", "nonce", "run2", proof) == "wrong secret"
    assert check_proof(b"other", "nonce", "run", proof) == "wrong secret"
    assert "secret" in (check_proof(b"key", "nonce", "run", "") or "")
    assert "secret" in (check_proof(None, "nonce", "run", proof) or "")
    assert check_proof(None, "nonce", "run", "") is None
    assert check_proof(b"key", "nonce", "run", "é") == "wrong secret"


def test_secret_from_env_keeps_undecodable_bytes_and_refuses_non_text() -> None:
    assert secret_from_env("S", {"S": "ab\udcff"}) == b"ab\xff"  # as os.environ decodes
    with pytest.raises(StoreSecretError, match="does not hold text"):
        secret_from_env("S", {"S": "\ud800"})
