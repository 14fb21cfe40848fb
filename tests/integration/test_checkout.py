"""The repository as committed: standard collection CI passes on it, and a plain clone resolves emp.deploy.*."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, ROOT


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=60).stdout


def committed_files() -> list[str]:
    """What `git add -A` would commit: tracked files still present plus new files that are not ignored."""
    names = git("ls-files", "-co", "--exclude-standard", "-z").split("\0")
    return [name for name in names if name and os.path.lexists(ROOT / name)]


@pytest.fixture
def plain_clone(tmp_path: Path) -> Path:
    """A copy of the committed tree only, at .../ansible_collections/emp/deploy as collection CI checks it out."""
    dest = tmp_path / "ansible_collections" / "emp" / "deploy"
    for name in committed_files():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target, follow_symlinks=False)
    return dest


def test_no_symlink_to_a_directory_is_committed():
    # ansible-test sanity (symlinks) refuses them; the collection link is made by tools/collection-link
    links = [line.split("\t", 1)[1] for line in git("ls-files", "-s").splitlines() if line.startswith("120000 ")]
    to_directories = [link for link in links if (ROOT / link).is_dir()]
    assert to_directories == []


def test_collection_link_is_not_committed_but_ignored():
    assert git("ls-files", "collections") == ""
    assert git("check-ignore", "collections/ansible_collections/emp/deploy").strip()


def test_collection_ci_sanity_accepts_the_committed_tree(plain_clone: Path):
    # the sanity test that refused the committed collections/ link, run as collection CI runs it
    result = subprocess.run([str(BIN / "ansible-test"), "sanity", "--test", "symlinks", "--python", "3.12",
                             "--color", "no"], cwd=plain_clone, capture_output=True, text=True, timeout=600,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'Running sanity test "symlinks"' in result.stdout + result.stderr


def test_plain_clone_resolves_the_collection_after_setup(plain_clone: Path):
    link = plain_clone / "collections" / "ansible_collections" / "emp" / "deploy"
    assert not os.path.lexists(link)
    env = dict(os.environ, ANSIBLE_CONFIG=str(plain_clone / "ansible.cfg"), PATH=f"{BIN}:{os.environ['PATH']}")
    env.pop("ANSIBLE_COLLECTIONS_PATH", None)
    # the same step make and tests/conftest.py run
    subprocess.run([str(plain_clone / "tools/collection-link")], check=True, timeout=60)
    assert link.is_symlink() and link.resolve() == plain_clone.resolve()
    doc = subprocess.run([str(BIN / "ansible-doc"), "-t", "module", "emp.deploy.gate"], cwd=plain_clone, env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert doc.returncode == 0, doc.stderr
    assert str(plain_clone) in doc.stdout  # the module documented is the clone's own
