"""Facts from the whole run: attributes written from other files keep init-derived rewrites safe."""

from __future__ import annotations

from codemod.cli import main
from codemod.project import ProjectFacts

POLICY = """import torch
import torch.nn as nn


class Policy(nn.Module):
    def __init__(self):
        super().__init__()
        self.log_alpha = nn.Parameter(torch.zeros(1))
        self.alpha = self.log_alpha.exp()

    def forward(self, x):
        return x * self.alpha
"""
TRAINER = """import torch


def refresh(agent):
    with torch.no_grad():
        agent.alpha = agent.log_alpha.exp()
"""
SUBCLASS = """import torch
from policy import Policy


class Fixed(Policy):
    def __init__(self):
        super().__init__()
        self.alpha = torch.ones(1)
"""


def test_scan_finds_foreign_and_subclass_stores_only():
    facts = ProjectFacts.scan(
        [
            (
                "a.py",
                b"def f(m, n):\n    m.alpha = 1\n    m.beta += 2\n    if m.gamma == 3 or m.delta <= 4 or m.eps != 5:\n"
                b"        setattr(m, 'zeta', 6)\n    self.own = 7\n",
            ),
            ("b.py", b"class Sub(pkg.Base):\n    def __init__(self):\n        self.x = 1\n"),
            ("c.py", b"class Base(nn.Module):\n    def __init__(self):\n        self.y = 1\n"),
        ]
    )
    assert set(facts.foreign_stores) == {"alpha", "beta", "zeta"}
    assert facts.foreign_stores["beta"] == "a.py:3"
    assert facts.subclass_files["Base"] == [{"x": "b.py:3"}]  # not c.py: it defines Base itself
    assert facts.subclass_store("Base", "x") == "b.py:3" and facts.subclass_store("Base", "y") is None


def _project(tmp_path, **files):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_store_in_another_file_turns_the_rewrite_into_a_report(tmp_path, capsys, monkeypatch):
    root = _project(tmp_path, **{"policy.py": POLICY, "train.py": TRAINER})
    monkeypatch.chdir(root)
    assert main(["apply", "--check", "--no-progress", "policy.py"]) == 1
    alone = capsys.readouterr().out
    assert "ID101" in alone
    assert main(["apply", "--check", "--no-progress", "."]) == 1
    out = capsys.readouterr().out
    assert "ID202" in out and "in another file (train.py:6)" in out and "ID101" not in out


def test_subclass_in_another_file_turns_the_rewrite_into_a_report(tmp_path, capsys, monkeypatch):
    # Enough files for the process pool: its workers must see the facts too.
    others = {f"m{i}.py": "import torch\n\nx = torch.zeros(3)\nx += 1\n" for i in range(10)}
    root = _project(tmp_path, **{"policy.py": POLICY, "fixed.py": SUBCLASS}, **others)
    monkeypatch.chdir(root)
    assert main(["apply", "--no-progress", "-j", "2", "."]) == 1
    out = capsys.readouterr().out
    assert "by a subclass in another file (fixed.py:8)" in out
    assert (root / "policy.py").read_text() == POLICY


def test_facts_reach_pool_workers(tmp_path, capsys, monkeypatch):
    # Nine files with a rewrite: the second pass (with facts) runs in the process pool too.
    files = {f"p{i}.py": POLICY.replace("class Policy", f"class Policy{i}") for i in range(9)}
    files["subs.py"] = "import torch\n" + "".join(
        f"\n\nclass Fixed{i}(Policy{i}):\n    def __init__(self):\n        super().__init__()\n        self.alpha = torch.ones(1)\n"
        for i in range(9)
    )
    root = _project(tmp_path, **files)
    monkeypatch.chdir(root)
    assert main(["apply", "--no-progress", "-j", "2", "."]) == 1
    out = capsys.readouterr().out
    assert out.count("by a subclass in another file (subs.py:") == 9
    assert all((root / f"p{i}.py").read_text() == files[f"p{i}.py"] for i in range(9))
