"""The GitHub App's speed, on loopback (fake GitHub, git over ``git http-backend``, real workers).

    python tests/benchmarks/bench_service.py                  # both parts
    python tests/benchmarks/bench_service.py --part webhook --deliveries 100 --rounds 5
    python tests/benchmarks/bench_service.py --part app       # the app's CPU per delivery, in process
    python tests/benchmarks/bench_service.py --part push --files 1000

webhook: acknowledgement time of signed ``push`` deliveries sent 100 at a time over pre-opened
connections to ``codemod serve --workers 0`` in its own process (each delivery stores a job, SQLite
store and queue), measured by the client from the request's first byte to the answer's last; p50
and p99 over all rounds, after a warm-up of 10 deliveries.

push: push -> PR for a one-file push into a repository of ``--files`` clean modules plus one with
the normalization bug and a one-case smoke test. The installation's first scan (every file
analysed, results cached by blob id) comes first and is reported apart; then a person pushes a
change to one file, and the job's stages are read from ``/jobs``: fetch, codemod (the gate: the
pushed file analysed, the rest from the cache), verification (the engine on the whole repository
with project facts, the smoke runs on the original and the rewritten tree, the locator) and
GitHub calls. The smoke test's own time is measured apart (``codemod verify`` of the bug alone).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import httpx  # noqa: E402

from e2e.world import BUGGY, SECRET, World  # noqa: E402
from service.events import signature_of  # noqa: E402

MODULE = """\
import torch
import torch.nn as nn


class Block{i}(nn.Module):
    def __init__(self, width: int = 8):
        super().__init__()
        self.lin = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width)

    def forward(self, x):
        h = self.lin(x)
        h = torch.relu(h)
        h = self.norm(h + x)
        return h * {scale} + x.mean(dim=-1, keepdim=True)
"""


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


async def _deliveries(url: str, bodies: list[bytes]) -> list[float]:
    """All deliveries at once over pre-opened keep-alive connections, with a bare asyncio client
    (an HTTP library's own CPU time would be counted in the figures on a small machine)."""
    host, port = url.removeprefix("http://").split(":")
    conns = [await asyncio.open_connection(host, int(port)) for _ in bodies]

    async def one(conn, body: bytes) -> float:
        reader, writer = conn
        headers = (
            f"POST /webhook HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: {uuid.uuid4()}\r\n"
            f"X-Hub-Signature-256: {signature_of(SECRET.encode(), body)}\r\n\r\n"
        )
        start = time.perf_counter()
        writer.write(headers.encode() + body)
        status = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        elapsed = time.perf_counter() - start
        assert b" 202 " in status, status
        writer.close()
        return elapsed

    return await asyncio.gather(*(one(c, b) for c, b in zip(conns, bodies)))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (its threads included), from /proc: what a delivery
    costs the server whatever else the machine runs."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_webhook(world: World, deliveries: int, rounds: int) -> dict:
    """Against ``codemod serve --workers 0`` in its own process (not this one's GIL)."""
    import socket
    import subprocess

    clone, sha = world.make_repo("bench-hooks", {"README.md": "x\n"})
    payload = json.dumps(world.push_payload("bench-hooks", "0" * 40, sha, added=["a.py"])).encode()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "codemod", "serve", "--port", str(port), "--workers", "0"],
        env={**world.worker_env(), "CODEMOD_DATA_DIR": str(world.root / "bench-data")},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                httpx.get(url + "/healthz")
                break
            except httpx.TransportError:
                assert time.time() < deadline
                time.sleep(0.2)
        asyncio.run(_deliveries(url, [payload] * 10))  # warm-up (first-use compilation), not counted
        times: list[float] = []
        rounds_p99 = []
        cpu = _cpu_seconds(server.pid)
        for _ in range(rounds):
            got = asyncio.run(_deliveries(url, [payload] * deliveries))
            rounds_p99.append(percentile(got, 99) * 1000)
            times += got
        cpu = _cpu_seconds(server.pid) - cpu
        metrics = httpx.get(url + "/metrics").text
        total = float(
            next(line.split()[-1] for line in metrics.splitlines() if line.startswith("codemod_webhook_seconds_sum"))
        )
        count = float(
            next(line.split()[-1] for line in metrics.splitlines() if line.startswith("codemod_webhook_seconds_count"))
        )
    finally:
        server.terminate()
        server.wait(30)
    return {
        "rounds_p99_ms": [round(r, 1) for r in rounds_p99],
        "handler_mean_ms": total / count * 1000,
        "server_cpu_ms_per_delivery": cpu / len(times) * 1000,
        "deliveries": len(times),
        "concurrency": deliveries,
        "p50_ms": percentile(times, 50) * 1000,
        "p99_ms": percentile(times, 99) * 1000,
        "max_ms": max(times) * 1000,
    }


def bench_push(world: World, files: int) -> dict:
    repo = {
        **BUGGY,
        **{f"pkg/gen/mod_{i:04d}.py": MODULE.format(i=i, scale=i % 7 + 1) for i in range(files)},
        "pkg/gen/__init__.py": "",
    }
    clone, first = world.make_repo("bench-push", repo)
    event = {
        "action": "added",
        "installation": {"id": world.gh.installation_id},
        "sender": {"login": "octocat", "type": "User"},
        "repository_selection": "selected",
        "repositories_added": [
            {
                "id": world.gh.repos["acme/bench-push"].id,
                "name": "bench-push",
                "full_name": "acme/bench-push",
                "private": True,
            }
        ],
        "repositories_removed": [],
    }
    world.deliver("installation_repositories", event)
    start = time.perf_counter()
    world.drain(1800)
    scan_wall = time.perf_counter() - start
    [scan] = world.jobs("bench-push")
    after = clone.commit({"pkg/gen/mod_0001.py": MODULE.format(i=1, scale=42)}, "one file")
    world.deliver("push", world.push_payload("bench-push", first, after, modified=["pkg/gen/mod_0001.py"]))
    start = time.perf_counter()
    world.drain(1800)
    wall = time.perf_counter() - start
    push = world.jobs("bench-push")[0]
    assert push["state"] == "done" and push["pr_url"], push
    smoke = _smoke_alone(world)
    return {
        "files": files + 4,
        "scan_stages": scan["stages"],
        "scan_wall_s": scan_wall,
        "push_stages": push["stages"],
        "push_job_s": push["finished_at"] - push["started_at"],
        "push_wall_s": wall,
        "pr": push["pr_url"],
        "smoke_alone_s": smoke,
    }


def _smoke_alone(world: World) -> float:
    """``codemod verify`` of the bug alone: the smoke test's own time (two sandboxed runs)."""
    import subprocess

    tmp = Path(tempfile.mkdtemp(prefix="bench-smoke-"))
    for rel, text in BUGGY.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(text)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "codemod", "verify", str(tmp)],
        capture_output=True,
        env={**world.worker_env(), "CODEMOD_CACHE": str(tmp / "cache")},
    )
    return time.perf_counter() - start


def bench_app(world: World, deliveries: int, rounds: int) -> dict:
    """The app's own CPU time per delivery: ASGI calls in this process, no HTTP server."""
    from service.app import create_app

    app = create_app(
        world.settings.model_copy(
            update={
                "codemod_data_dir": world.root / "app-data",
                "codemod_database_url": None,
                "codemod_queue_url": None,
            }
        )
    )
    _, sha = world.make_repo("bench-app", {"README.md": "x\n"})
    body = json.dumps(world.push_payload("bench-app", "0" * 40, sha, added=["a.py"])).encode()
    signature = signature_of(SECRET.encode(), body).encode()

    async def one() -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"x-github-event", b"push"),
            (b"x-github-delivery", str(uuid.uuid4()).encode()),
            (b"x-hub-signature-256", signature),
        ]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/webhook",
            "raw_path": b"/webhook",
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }
        messages = iter([{"type": "http.request", "body": body, "more_body": False}])
        sent = []

        async def receive():
            return next(messages)

        async def send(message):
            sent.append(message)

        await app(scope, receive, send)
        assert sent[0]["status"] == 202, sent

    async def run() -> float:
        await asyncio.gather(*(one() for _ in range(10)))  # warm-up
        cpu = time.process_time()
        for _ in range(rounds):
            await asyncio.gather(*(one() for _ in range(deliveries)))
        return time.process_time() - cpu

    return {"deliveries": deliveries * rounds, "cpu_ms_per_delivery": asyncio.run(run()) / (deliveries * rounds) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("webhook", "app", "push", "all"), default="all")
    parser.add_argument("--deliveries", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--files", type=int, default=1000)
    args = parser.parse_args()
    world = World(Path(tempfile.mkdtemp(prefix="bench-service-")))
    try:
        if args.part in ("webhook", "all"):
            r = bench_webhook(world, args.deliveries, args.rounds)
            print(
                f"webhook ack, {r['deliveries']} signed deliveries, {r['concurrency']} at a time: "
                f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms; p99 per round "
                f"{r['rounds_p99_ms']}; server-side handler mean {r['handler_mean_ms']:.2f} ms (signature to answer, "
                f"group commit included); server CPU {r['server_cpu_ms_per_delivery']:.2f} ms per delivery"
            )
        if args.part in ("app", "all"):
            r = bench_app(world, args.deliveries, args.rounds)
            print(
                f"app CPU per delivery (in process, {r['deliveries']} deliveries, no HTTP server): "
                f"{r['cpu_ms_per_delivery']:.3f} ms (store thread included)"
            )
        if args.part in ("push", "all"):
            world.store.engine.dispose()
            from service.queue import JobQueue

            JobQueue(world.settings.queue_url).flush()  # the webhook part's jobs are not the point here
            with world.store.session() as s:
                from sqlalchemy import update

                from service.store import Job

                s.execute(update(Job).where(Job.state == "queued").values(state="done"))
            r = bench_push(world, args.files)
            print(
                f"installation scan of {r['files']} files: {json.dumps(r['scan_stages'])} (wall {r['scan_wall_s']:.1f} s)"
            )
            print(
                f"one-file push -> PR: {json.dumps(r['push_stages'])}; job {r['push_job_s']:.1f} s "
                f"(drain wall {r['push_wall_s']:.1f} s incl. worker start); smoke test alone "
                f"(codemod verify of the bug) {r['smoke_alone_s']:.1f} s"
            )
    finally:
        world.close()


if __name__ == "__main__":
    main()
