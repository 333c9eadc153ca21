"""``codemod.api.fix_repository``: the one entry point the App and ``apply --verify`` share. These
tests stay on the engine side (no smoke run); the e2e suite and test_verify.py cover verification."""

from __future__ import annotations

from pathlib import Path

from codemod.api import blob_id, fix_repository
from codemod.verify.settings import OperatorSettings
from e2e.world import BUGGY, CLEAN, MODEL


class DictCache:
    """An in-memory result cache (the App's lives in its job store)."""

    def __init__(self) -> None:
        self.data: dict[str, dict] = {}
        self.puts: list[str] = []

    def get_many(self, keys):
        return {k: self.data[k] for k in keys if k in self.data}

    def put_many(self, items):
        self.puts += list(items)
        self.data.update(items)


def make(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_a_clean_repository_is_clean_without_a_smoke_run(tmp_path):
    outcome = fix_repository(make(tmp_path, CLEAN), cache=DictCache())
    assert outcome.status == "clean" and outcome.findings == [] and "verification" not in outcome.seconds


def test_unchanged_files_come_from_the_cache_keyed_by_blob_id(tmp_path):
    repo = make(tmp_path, CLEAN)
    cache = DictCache()
    fix_repository(repo, cache=cache)
    assert len(cache.puts) == 3  # three .py files analysed
    key = blob_id((repo / "pkg/model.py").read_bytes())
    assert any(k.startswith(key + ":") for k in cache.puts)
    cache.puts.clear()
    fix_repository(repo, [], cache=cache)
    assert cache.puts == []  # nothing pushed, nothing analysed
    (repo / "pkg/model.py").write_text(MODEL)
    outcome = fix_repository(repo, ["pkg/model.py"], cache=cache, verify=False)
    assert [k.split(":")[0] for k in cache.puts] == [blob_id(MODEL.encode())]
    assert outcome.status == "unverified" and [f.code for f in outcome.rewrites] == ["IP101"]


def test_fingerprints_survive_line_moves_and_change_with_the_code(tmp_path):
    first = fix_repository(make(tmp_path / "a", BUGGY), verify=False, gate=False).rewrites[0]
    moved = fix_repository(
        make(tmp_path / "b", {**BUGGY, "pkg/model.py": "# moved\n\n\n" + MODEL}), verify=False, gate=False
    ).rewrites[0]
    changed = fix_repository(
        make(tmp_path / "c", {**BUGGY, "pkg/model.py": MODEL.replace("x /= stdev", "x /= 2 * stdev")}),
        verify=False,
        gate=False,
    ).rewrites[0]
    assert (first.line, moved.line) == (13, 16)
    assert (first.write_text, first.saved_line, first.saved_text) == (
        "x /= stdev",
        12,
        "stdev = torch.sqrt(torch.var(x, dim=1, keepdim=True) + 1e-5)",
    )
    assert first.fingerprint == moved.fingerprint != changed.fingerprint


def test_declined_findings_are_not_proposed_again(tmp_path):
    repo = make(tmp_path, BUGGY)
    fingerprint = fix_repository(repo, verify=False, gate=False).rewrites[0].fingerprint
    outcome = fix_repository(repo, cache=DictCache(), declined={fingerprint})
    assert outcome.status == "nothing to do" and outcome.changes == []
    assert "declined by a closed pull request" in outcome.notes[0]
    partial = fix_repository(repo, verify=False, gate=False, declined={fingerprint})
    assert partial.changes == [] and partial.findings[0].declined and not partial.findings[0].fixed


def test_repository_requirements_turned_off_by_the_operator_are_not_installed(tmp_path):
    pyproject = BUGGY["pyproject.toml"].replace(
        "[tool.codemod.smoke]\n", '[tool.codemod.smoke]\nrequirements = ["./evil"]\n'
    )
    marker = tmp_path / "installed"
    evil = f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\nfrom setuptools import setup\nsetup(name='evil')\n"
    repo = make(tmp_path / "repo", {**BUGGY, "pyproject.toml": pyproject, "evil/setup.py": evil})
    outcome = fix_repository(repo, settings=OperatorSettings(allow_requirements=False))
    assert outcome.status == "nothing could be verified" and not outcome.proven and not marker.exists()
    assert "requirements is turned off by the operator" in " ".join(outcome.notes)
