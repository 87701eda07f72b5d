"""scripts/bootstrap.sh, run for real with a real venv and pip, offline: a tiny project whose build backend
lives in the tree (no download), so the test is fast and needs no network."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

BACKEND = '''
import base64, hashlib, os, zipfile
NAME, VERSION = "tbfake", "0.1"
DI = f"{NAME}-{VERSION}.dist-info"
META = f"Metadata-Version: 2.1\\nName: {NAME}\\nVersion: {VERSION}\\n"

def _wheel(d, files):
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    files = dict(files, **{f"{DI}/METADATA": META,
                           f"{DI}/WHEEL": "Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"})
    rec = [f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(t.encode()).digest()).rstrip(b'=').decode()},"
           f"{len(t.encode())}" for p, t in files.items()] + [f"{DI}/RECORD,,"]
    with zipfile.ZipFile(os.path.join(d, name), "w") as z:
        for p, t in files.items():
            z.writestr(p, t)
        z.writestr(f"{DI}/RECORD", "\\n".join(rec) + "\\n")
    return name

def get_requires_for_build_editable(config_settings=None):
    return []

def prepare_metadata_for_build_editable(d, config_settings=None):
    os.makedirs(os.path.join(d, DI), exist_ok=True)
    with open(os.path.join(d, DI, "METADATA"), "w") as f:
        f.write(META)
    return DI

def build_editable(d, config_settings=None, metadata_directory=None):
    return _wheel(d, {f"{NAME}.pth": os.path.abspath(".") + "\\n"})

build_wheel = build_editable
get_requires_for_build_wheel = get_requires_for_build_editable
'''


def fake_repo(tmp: Path) -> Path:
    repo = tmp / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "bootstrap.sh", repo / "scripts" / "bootstrap.sh")
    (repo / "tracer").mkdir()
    (repo / "tracer" / "__init__.py").write_text("")
    (repo / "tracer" / "cli.py").write_text("")
    (repo / "tb_backend.py").write_text(BACKEND)
    (repo / "pyproject.toml").write_text('[build-system]\nrequires = []\nbuild-backend = "tb_backend"\n'
                                         'backend-path = ["."]\n[project]\nname = "tbfake"\nversion = "0.1"\n')
    return repo


def bootstrap(repo: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, TB_PYTHON=sys.executable, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return subprocess.run(["bash", str(repo / "scripts" / "bootstrap.sh")], env=env, cwd=repo, capture_output=True,
                          text=True, timeout=300)


def test_a_venv_whose_python_vanished_is_rebuilt(tmp_path):
    repo = fake_repo(tmp_path)
    first = bootstrap(repo)
    assert first.returncode == 0, first.stderr
    assert (repo / ".venv" / ".installed").exists()
    assert bootstrap(repo).stderr == ""                      # up to date: nothing done
    # the interpreter the venv links to is removed (what a Homebrew upgrade does)
    for exe in (repo / ".venv" / "bin").glob("python*"):
        exe.unlink()
        exe.symlink_to(tmp_path / "Cellar" / "python@3.11" / "gone" / "python3.11")
    again = bootstrap(repo)
    assert again.returncode == 0, again.stderr
    assert "no longer runs" in again.stderr and "installing" in again.stderr
    ok = subprocess.run([str(repo / ".venv" / "bin" / "python"), "-c", "import tracer.cli"], capture_output=True,
                        cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr                        # the editable install is back, from any folder


def test_a_failed_pip_upgrade_does_not_stop_the_install(tmp_path):
    """Offline the pip upgrade fails; the project install does not need it (it used to abort the setup, and
    with it the start). A constraint no index can satisfy makes the upgrade fail here, the install not."""
    repo = fake_repo(tmp_path)
    (tmp_path / "constraints.txt").write_text("pip==0.0.1\n")
    env = dict(os.environ, TB_PYTHON=sys.executable, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               PIP_CONSTRAINT=str(tmp_path / "constraints.txt"))
    r = subprocess.run(["bash", str(repo / "scripts" / "bootstrap.sh")], env=env, cwd=repo, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "could not upgrade pip" in r.stderr and (repo / ".venv" / ".installed").exists()


def test_the_newest_python_is_found_by_name(tmp_path):
    """python3.14 is a candidate (the list stopped at 3.13, and fell back to an older python3)."""
    repo = fake_repo(tmp_path)
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    (fakebin / "python3.14").symlink_to(sys.executable)
    env = {k: v for k, v in os.environ.items() if k != "TB_PYTHON"}
    env.update(PATH=f"{fakebin}:/usr/bin:/bin", PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    r = subprocess.run(["bash", str(repo / "scripts" / "bootstrap.sh")], env=env, cwd=repo, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "creating .venv with python3.14" in r.stderr


def test_a_moved_checkout_gets_a_venv_of_its_own(tmp_path):
    """Moved (the README's advice for a checkout in ~/Documents), .venv's scripts started the old folder's Python
    and the editable install pointed at the old folder: .venv/bin/tracer no longer ran, and setup did not notice
    (tracer imports from the checkout's own folder)."""
    repo = fake_repo(tmp_path)
    assert bootstrap(repo).returncode == 0
    moved = tmp_path / "moved repo"
    repo.rename(moved)
    again = bootstrap(moved)
    assert again.returncode == 0, again.stderr
    assert "moved or copied" in again.stderr and "installing" in again.stderr
    where = subprocess.run([str(moved / ".venv" / "bin" / "python"), "-c",
                            "import pathlib, tracer; print(pathlib.Path(tracer.__file__).resolve().parents[1])"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert where.returncode == 0 and where.stdout.strip() == str(moved.resolve())
    assert bootstrap(moved).stderr == ""                      # up to date again: nothing done
