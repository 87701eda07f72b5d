"""scripts/shell_lib.sh's ``dotenv_value`` (the start script's --stop and --status with a broken .venv, the health
check's alert) reads what python-dotenv reads: a .env saved with a UTF-8 BOM (Windows Notepad, some editors) used
to hide its first line from it, and --stop then looked for the agents' pid files in ./state."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tracer.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "scripts" / "shell_lib.sh"
BOM = b"\xef\xbb\xbf"


def dotenv_value(folder: Path, name: str) -> tuple[int, str]:
    r = subprocess.run(["bash", "-c", '. "$1" && dotenv_value "$2"', "-", str(LIB), name], cwd=folder,
                       capture_output=True, text=True, timeout=30)
    assert r.stderr == ""
    return r.returncode, r.stdout


@pytest.mark.parametrize("text", [b"TB_STATE_DIR=mystate\r\nTB_PROFILE=trend\r\n",
                                  b"export TB_STATE_DIR='mystate'  # moved\nTB_PROFILE=trend\n",
                                  b'TB_STATE_DIR="mystate"\n# Cl\xe9s (Latin-1)\nTB_PROFILE=trend\n'],
                         ids=["crlf", "export-quoted", "latin1-comment"])
@pytest.mark.parametrize("bom", [False, True], ids=["plain", "bom"])
def test_the_first_line_of_a_env_with_a_bom_is_read(tmp_path, text, bom):
    (tmp_path / ".env").write_bytes((BOM if bom else b"") + text)
    assert dotenv_value(tmp_path, "TB_STATE_DIR") == (0, "mystate\n")
    assert dotenv_value(tmp_path, "TB_PROFILE") == (0, "trend\n")
    assert dotenv_value(tmp_path, "TB_LOG_DIR") == (1, "")
    if b"\xe9" not in text:      # what the agents read (python-dotenv strips the BOM)
        assert str(load_settings({}, tmp_path / ".env").state_dir) == "mystate"


def test_only_a_leading_bom_is_stripped(tmp_path):
    (tmp_path / ".env").write_bytes(b"TB_PROFILE=trend\n" + BOM + b"TB_STATE_DIR=mystate\n")
    assert dotenv_value(tmp_path, "TB_STATE_DIR") == (1, "")
