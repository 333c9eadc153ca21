"""Bad input, as a user meets it: each case builds a small tree, runs the real ``codemod`` command
in a child process, and asserts the one-line message, the exit status, that no traceback reached
the user, and that nothing changed on disk except what the case names (the whole temporary
directory is snapshotted, including the files outside the tree that symlinks point to).

Permission cases run as a non-root user (uid 65534, via ``setpriv``): root bypasses permissions.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

HAZARD = textwrap.dedent("""\
    import torch


    def norm(a):
        x = a * 2
        s = torch.var(x, dim=0, keepdim=True)
        x /= s
        return x
""")
FIXED_LINE = "    x = x / s\n"
NOBODY = 65534


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def snapshot(top: Path) -> dict[str, tuple]:
    """Every entry under ``top``: kind, permission bits, and content or link target."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = path.relative_to(top).as_posix()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", st.st_mode & 0o7777, path.read_bytes())
            else:
                out[rel] = ("dir", st.st_mode & 0o7777)
    return out


def run_codemod(
    args: list[str], cwd: Path, as_nobody: bool = False, shell_suffix: str = "", stdout=subprocess.PIPE
) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "codemod", *args]
    if shell_suffix:
        argv = ["bash", "-c", " ".join(f"'{a}'" for a in argv) + " " + shell_suffix]
    if as_nobody and os.geteuid() == 0:
        argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEMOD_DEBUG")}
    env["HOME"] = str(cwd)
    return subprocess.run(argv, cwd=cwd, stdout=stdout, stderr=subprocess.PIPE, text=True, env=env, timeout=300)


@dataclass
class Case:
    name: str
    build: Callable[[Path], None]  # builds the tree under ``base/tree`` (and anything beside it)
    args: list[str]
    exit: int
    message: str | None  # a regex for one line of the output (stdout or stderr); None: no message at all
    changed: set[str] = field(default_factory=set)  # paths (relative to base) that must change
    nobody: bool = False  # run as a non-root user
    suffix: str = ""  # shell redirections


def _hazard_and(extra: dict[str, str | bytes]) -> Callable[[Path], None]:
    def build(base: Path) -> None:
        write(base / "tree" / "m.py", HAZARD)
        for name, content in extra.items():
            write(base / "tree" / name, content)

    return build


def _links(*pairs: tuple[str, str], outside: bool = False, with_hazard: bool = True) -> Callable[[Path], None]:
    def build(base: Path) -> None:
        (base / "tree").mkdir()
        if with_hazard:
            write(base / "tree" / "m.py", HAZARD)
        if outside:
            write(base / "outside" / "victim.py", HAZARD)
            (base / "outside" / "pkg").mkdir()
            write(base / "outside" / "pkg" / "deep.py", HAZARD)
        for name, target in pairs:
            os.symlink(target, base / "tree" / name)

    return build


def _huge(base: Path) -> None:
    body = "".join(f"# generated line {i}: weights table entry\n" for i in range(50000))  # 2.2 MB
    write(base / "tree" / "huge.py", "import torch\n\n\n" + body + "\n\n" + HAZARD.split("\n\n\n", 1)[1])


def _chmod(path_rel: str, mode: int, extra: dict[str, str] | None = None) -> Callable[[Path], None]:
    def build(base: Path) -> None:
        write(base / "tree" / "m.py", HAZARD)
        for name, content in (extra or {}).items():
            write(base / "tree" / name, content)
        os.chmod(base / "tree" / path_rel, mode)

    return build


def _config(text: str) -> Callable[[Path], None]:
    def build(base: Path) -> None:
        write(base / "tree" / "m.py", HAZARD)
        write(base / "tree" / "pyproject.toml", text)

    return build


SYNTAX_ERROR = "import torch\n\n\ndef f(:\n    x /= 2\n"
NOT_UTF8 = b"import torch\n\n\ndef f(a):\n    s = '\xff'\n    x = torch.var(a)\n    a /= x\n"
WRONG_CODING = b"# -*- coding: utf-8 -*-\nimport torch\n\ndef f(a):\n    s = '\xff'\n    a /= torch.var(a)\n"
LATIN1 = ("# -*- coding: latin-1 -*-\n" + HAZARD.replace("x /= s", "x /= s  # \xe9")).encode("latin-1")
BINARY = b"import torch\x00\x00\n\ndef f(a):\n    a /= torch.var(a)\x00\n"

CASES = [
    Case(
        "syntax error",
        _hazard_and({"bad.py": SYNTAX_ERROR}),
        ["apply", "tree"],
        0,
        r"^tree/bad\.py: skipped: syntax error at line 4: invalid syntax$",
        {"tree/m.py"},
    ),
    Case(
        "not UTF-8, no coding line",
        _hazard_and({"enc.py": NOT_UTF8}),
        ["apply", "tree"],
        0,
        r"^tree/enc\.py: skipped: cannot decode byte 0xff at line 5 \(no coding line: UTF-8\)$",
        {"tree/m.py"},
    ),
    Case(
        "not UTF-8, wrong coding line",
        _hazard_and({"enc.py": WRONG_CODING}),
        ["apply", "tree"],
        0,
        r"^tree/enc\.py: skipped: cannot decode byte 0xff at line 5 \(its coding line declares utf-8\)$",
        {"tree/m.py"},
    ),
    Case(
        "latin-1 with its coding line is rewritten in latin-1",
        _hazard_and({"lat.py": LATIN1}),
        ["apply", "tree"],
        0,
        r"^Scanned 2 files .*rewrote 2 files",
        {"tree/m.py", "tree/lat.py"},
    ),
    Case(
        "binary file",
        _hazard_and({"bin.py": BINARY}),
        ["apply", "tree"],
        0,
        r"^tree/bin\.py: skipped: syntax error: source code string cannot contain null bytes$",
        {"tree/m.py"},
    ),
    Case(
        "empty file",
        _hazard_and({"empty.py": ""}),
        ["apply", "tree"],
        0,
        r"^Scanned 2 files .*rewrote 1 file .*0 files skipped\.$",
        {"tree/m.py"},
    ),
    Case("huge file", _huge, ["apply", "tree"], 0, r"^tree/huge\.py:500\d\d:5: IP101 .*\[fixed\]$", {"tree/huge.py"}),
    Case(
        "brackets nested deeper than Python allows",
        _hazard_and({"deep.py": "import torch\nx = " + "(" * 3000 + "1" + ")" * 3000 + "\nx /= 2\n"}),
        ["apply", "tree"],
        0,
        r"^tree/deep\.py: skipped: syntax error at line 2: too many nested parentheses$",
        {"tree/m.py"},
    ),
    Case(
        "file symlink loop",
        _links(("a.py", "b.py"), ("b.py", "a.py")),
        ["apply", "tree"],
        0,
        r"^tree/a\.py: skipped: symlink loop$",
        {"tree/m.py"},
    ),
    Case(
        "directory symlink loop",
        _links(("d1", "d2"), ("d2", "d1")),
        ["apply", "tree"],
        0,
        r"^tree/d1: skipped: symlink loop$",
        {"tree/m.py"},
    ),
    Case(
        "directory symlink to its parent",
        _links(("self", ".")),
        ["apply", "tree"],
        0,
        r"^tree/self: skipped: symlink loop \(-> \., a directory that contains it\); not followed$",
        {"tree/m.py"},
    ),
    Case(
        "dangling symlink",
        _links(("gone.py", "nowhere.py")),
        ["apply", "tree"],
        0,
        r"^tree/gone\.py: skipped: dangling symlink \(-> nowhere\.py\)$",
        {"tree/m.py"},
    ),
    Case(
        "symlink to a file outside the tree",
        _links(("link.py", "../outside/victim.py"), outside=True),
        ["apply", "tree"],
        0,
        r"^tree/link\.py: skipped: symlink to .*/outside/victim\.py, outside .*/tree; not followed$",
        {"tree/m.py"},
    ),
    Case(
        "symlink given explicitly, outside the tree",
        _links(("link.py", "../outside/victim.py"), outside=True),
        ["apply", "tree/link.py"],
        0,
        r"^tree/link\.py: skipped: symlink to .*/outside/victim\.py, outside",
        set(),
    ),
    Case(
        "symlink to a directory outside the tree",
        _links(("ext", "../outside/pkg"), outside=True),
        ["apply", "tree"],
        0,
        r"^tree/ext: skipped: symlink to .*/outside/pkg, outside .*/tree; not followed$",
        {"tree/m.py"},
    ),
    Case(
        "symlink inside the tree is written through, the link kept",
        _links(("alias.py", "m.py"), with_hazard=True),
        ["apply", "tree/alias.py"],
        0,
        r"rewrote 1 file",
        {"tree/m.py"},
    ),
    Case(
        "unreadable file",
        _chmod("r.py", 0o000, {"r.py": HAZARD}),
        ["apply", "tree"],
        0,
        r"^tree/r\.py: skipped: cannot read: Permission denied$",
        {"tree/m.py"},
        nobody=True,
    ),
    Case(
        "unreadable directory",
        _chmod("sub", 0o000, {"sub/x.py": HAZARD}),
        ["apply", "tree"],
        0,
        r"^tree/sub: skipped: cannot read directory: Permission denied$",
        {"tree/m.py"},
        nobody=True,
    ),
    Case(
        "unwritable file beside writable ones",
        _chmod("ro.py", 0o444, {"ro.py": HAZARD, "w.py": HAZARD}),
        ["apply", "tree"],
        1,
        r"^codemod: error: tree/ro\.py: not written: permission denied \(the file is read-only\)$",
        {"tree/m.py", "tree/w.py"},
        nobody=True,
    ),
    Case(
        "unwritable directory beside writable ones",
        _chmod("sub", 0o555, {"sub/x.py": HAZARD}),
        ["apply", "tree"],
        1,
        r"^codemod: error: tree/sub/x\.py: not written: cannot create a file in .*/tree/sub: Permission denied$",
        {"tree/m.py"},
        nobody=True,
    ),
    Case(
        "-o into a missing directory",
        _hazard_and({}),
        ["apply", "-o", "/nonexistent/dir/report.txt", "tree"],
        2,
        r"^codemod: error: -o /nonexistent/dir/report\.txt: directory /nonexistent/dir does not exist$",
    ),
    Case(
        "-o onto a directory",
        _hazard_and({}),
        ["apply", "-o", "tree", "tree"],
        2,
        r"^codemod: error: -o tree: is a directory$",
    ),
    Case(
        "-o into an unwritable directory",
        _chmod(".", 0o555),
        ["apply", "-o", "tree/report.txt", "tree"],
        2,
        r"^codemod: error: -o tree/report\.txt: permission denied$",
        nobody=True,
    ),
    Case(
        "verify -o into a missing directory",
        _hazard_and({}),
        ["verify", "-o", "/nonexistent/dir/v.txt", "tree"],
        2,
        r"^codemod: error: -o /nonexistent/dir/v\.txt: directory /nonexistent/dir does not exist$",
    ),
    Case(
        "verify with no smoke config and no module class",
        _hazard_and({}),
        ["verify", "tree"],
        1,
        r"^verdict: nothing could be verified: no smoke case ran: .* no nn\.Module class in the rewritten files \(m\.py\)",
    ),
    Case(
        "closed stdout",
        _hazard_and({}),
        ["apply", "tree"],
        2,
        r"^codemod: error: stdout is closed; give -o FILE for the report$",
        suffix=">&-",
    ),
    Case(
        "closed stdout, report to a file",
        _hazard_and({}),
        ["apply", "-o", "report.txt", "tree"],
        0,
        r"^Scanned 1 file .*rewrote 1 file",
        {"tree/m.py", "report.txt"},
        suffix=">&-",
    ),
    Case(
        "closed stdout, rules",
        _hazard_and({}),
        ["rules"],
        2,
        r"^codemod: error: stdout is closed; give -o FILE for the report$",
        suffix=">&-",
    ),
    Case(
        "missing path",
        _hazard_and({}),
        ["apply", "tree/nope.py"],
        2,
        r"^codemod: error: tree/nope\.py: no such file or directory$",
    ),
    Case(
        "missing --config",
        _hazard_and({}),
        ["apply", "--config", "nope.toml", "tree"],
        2,
        r"^codemod: error: nope\.toml: cannot read: No such file or directory$",
    ),
    Case(
        "TOML syntax error",
        _config("[tool.codemod\ninclude = 1\n"),
        ["apply", "tree"],
        2,
        r"^codemod: error: .*tree/pyproject\.toml: not valid TOML: .*\(at line 1, column 14\)$",
    ),
    Case(
        "config not UTF-8",
        _config("[tool.codemod]\ninclude = ['\xff']\n".encode("latin-1")),
        ["apply", "tree"],
        2,
        r"^codemod: error: .*tree/pyproject\.toml: not valid TOML: .*$",
    ),
    Case(
        "tool.codemod not a table",
        _config("[tool]\ncodemod = 3\n"),
        ["apply", "tree"],
        2,
        r"^codemod: error: .*tree/pyproject\.toml: `tool\.codemod` must be a table$",
    ),
]

# Every key of the config with a value of the wrong type (or an unknown key): exit 2, the key named.
BAD_VALUES = [
    ("include = 'x.py'", "include", "must be a list of strings"),
    ("exclude = [1]", "exclude", "must be a list of strings"),
    ("select = ['nope']", "select", "names unknown rule or family 'nope'"),
    ("ignore = 'IP101'", "ignore", "must be a list of strings"),
    ("inplace = true", "inplace", "must be one of 'hazards', 'all', not True"),
    ("colour = 1", "colour", "is not a known key"),
    ("smoke = 1", "smoke", "must be a table"),
    ("smoke = {command = ''}", "smoke.command", "must be a non-empty string"),
    ("smoke = {cases = 3}", "smoke.cases", "must look like 'module_or_path:function'"),
    ("smoke = {device = 'tpu'}", "smoke.device", "must be one of 'cpu', 'cuda', 'auto', not 'tpu'"),
    ("smoke = {timeout = -1}", "smoke.timeout", "must be a positive number of seconds"),
    ("smoke = {timeout = '9'}", "smoke.timeout", "must be a positive number of seconds"),
    ("smoke = {requirements = 'torch'}", "smoke.requirements", "must be a list of requirement strings"),
    ("smoke = {gpu = 1}", "smoke.gpu", "is not a known key"),
    ("github = []", "github", "must be a table"),
    ("github = {branch = 'a..b'}", "github.branch", "is not a valid git branch name: 'a..b'"),
    ("github = {branch = 7}", "github.branch", "is not a valid git branch name: 7"),
    ("github = {unverified = 'open'}", "github.unverified", "must be one of 'draft', 'skip', not 'open'"),
    ("github = {token = 'x'}", "github.token", "is not a known key"),
]
CASES += [
    Case(
        f"config {key}: {text}",
        _config(f"[tool.codemod]\n{text}\n"),
        ["apply", "tree"],
        2,
        rf"^codemod: error: .*tree/pyproject\.toml: `tool\.codemod\.{re.escape(key)}` {re.escape(problem)}",
    )
    for text, key, problem in BAD_VALUES
]


@pytest.fixture
def base():
    """A directory a non-root user can reach (pytest's own temporary root is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="codemod-bad-input-"))
    os.chmod(path, 0o755)
    yield path
    for dirpath, dirnames, _ in os.walk(path):
        for d in dirnames:
            if not os.path.islink(os.path.join(dirpath, d)):
                os.chmod(os.path.join(dirpath, d), 0o755)
    shutil.rmtree(path, ignore_errors=True)


def _give_to_nobody(top: Path) -> None:
    if os.geteuid() != 0:
        return
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is needed to run as a non-root user")
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [*dirnames, *filenames, ""]:
            os.lchown(os.path.join(dirpath, name), NOBODY, NOBODY)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, base: Path):
    case.build(base)
    if case.nobody:
        _give_to_nobody(base)
    before = snapshot(base)
    proc = run_codemod(case.args, base, as_nobody=case.nobody, shell_suffix=case.suffix)
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output
    assert proc.returncode == case.exit, output
    if case.message is not None:
        assert any(re.search(case.message, line) for line in output.splitlines()), output
    after = snapshot(base)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed == case.changed, output
    for rel in case.changed:
        if rel.endswith(".py"):
            data = (base / rel).read_bytes()
            assert b"    x = x / s" in data and not (base / rel).is_symlink()
    if "tree/lat.py" in case.changed:
        assert "# \xe9".encode("latin-1") in (base / "tree" / "lat.py").read_bytes()
    # No temporary file is left behind, whatever failed.
    assert not [k for k in after if k.endswith(".codemod-tmp")]


def test_reader_that_goes_away_is_not_an_error(base: Path):
    """``codemod rules | head -1``: the pipe closes before codemod writes; no traceback, exit 0."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = run_codemod(["rules"], base, stdout=write_end)
    finally:
        os.close(write_end)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_file_changed_or_removed_during_the_run(base: Path, monkeypatch, capsys):
    """Between analysis and write, one file is edited and one is deleted: both are reported, the
    third is written, the exit status is 1."""
    from codemod import cli

    for name in ("edited.py", "removed.py", "kept.py"):
        write(base / name, HAZARD)
    real_run = cli.run

    def run_then_touch(*args, **kwargs):
        results = real_run(*args, **kwargs)
        (base / "edited.py").write_text(HAZARD + "# edited by someone\n")
        (base / "removed.py").unlink()
        return results

    monkeypatch.setattr(cli, "run", run_then_touch)
    monkeypatch.chdir(base)
    code = cli.main(["apply", "--format", "json", "."])
    out = capsys.readouterr()
    assert code == 1
    assert "codemod: error: edited.py: not written: changed on disk while codemod was running" in out.err
    assert "codemod: error: removed.py: not written: cannot re-read it: No such file or directory" in out.err
    assert FIXED_LINE in (base / "kept.py").read_text()
    assert (base / "edited.py").read_text().endswith("# edited by someone\n")
    import json

    report = json.loads(out.out)
    by_path = {f["path"]: f for f in report["files"]}
    assert by_path["edited.py"]["not_written"] == "changed on disk while codemod was running"
    assert [f["fixed"] for f in by_path["edited.py"]["findings"]] == [False]
    assert [f["fixed"] for f in by_path["kept.py"]["findings"]] == [True]
    assert report["summary"]["unwritten"][0]["path"] == "edited.py"


def test_debug_shows_the_traceback_only_when_asked(base: Path):
    write(base / "tree" / "pyproject.toml", "[tool.codemod\n")
    quiet = run_codemod(["apply", "tree"], base)
    loud = run_codemod(["apply", "--debug", "tree"], base)
    assert quiet.returncode == loud.returncode == 2
    assert "Traceback" not in quiet.stderr and len(quiet.stderr.splitlines()) == 1
    assert "Traceback" in loud.stderr and "not valid TOML" in loud.stderr.splitlines()[-1]
