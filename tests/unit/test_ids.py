"""Random names made without uuid and tempfile."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

from rallypoint.ids import private_dir, temp_root, uuid4_text


def test_uuid4_text_is_a_version_4_uuid() -> None:
    texts = {uuid4_text() for _ in range(100)}
    assert len(texts) == 100
    for text in texts:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)


def test_temp_root_follows_tempfiles_variables() -> None:
    assert temp_root({"TMPDIR": "/a", "TMP": "/b"}) == "/a"
    assert temp_root({"TEMP": "", "TMP": "/b"}) == "/b"
    assert temp_root({}) == "/tmp"


def test_private_dir_is_new_and_only_ours(tmp_path: Path) -> None:
    first, second = private_dir(str(tmp_path), "x_"), private_dir(str(tmp_path), "x_")
    assert first != second
    assert os.path.basename(first).startswith("x_")
    assert stat.S_IMODE(os.stat(first).st_mode) == 0o700
