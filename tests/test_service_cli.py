"""``codemod serve`` (everything in one process tree, SQLite under CODEMOD_DATA_DIR) and
``codemod worker``, as an operator starts them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import httpx
import pytest

from e2e.world import ADMIN, CLEAN, World


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = World(tmp_path_factory.mktemp("serve"))
    yield w
    w.close()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_settings_errors_name_the_variable_and_no_traceback(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    for command in ("serve", "worker"):
        done = subprocess.run(
            [sys.executable, "-m", "codemod", command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2
        assert done.stderr.strip().splitlines() == [
            "codemod: error: GITHUB_APP_ID: Field required; GITHUB_WEBHOOK_SECRET: Field required"
        ]


def test_serve_runs_the_app_and_its_workers_in_one_command(world, tmp_path):
    env = {**world.worker_env(), "CODEMOD_DATA_DIR": str(tmp_path / "data")}
    with _serving(env, tmp_path, workers=1) as (proc, client):
        deadline = time.time() + 60
        clone, sha = world.make_repo("served", CLEAN)
        world.http, saved = client, world.http
        try:
            assert (
                world.deliver("push", world.push_payload("served", "0" * 40, sha, added=list(CLEAN))).status_code == 202
            )
            headers = {"Authorization": f"Bearer {ADMIN}"}
            while True:
                [job] = client.get("/jobs", headers=headers).json()["jobs"]
                if job["state"] in ("done", "failed"):
                    break
                assert time.time() < deadline + 60
                time.sleep(0.3)
        finally:
            world.http = saved
        assert job["state"] == "done" and job["result"]["status"] == "clean"
        assert client.get(f"/jobs/{job['id']}", headers=headers).json()["id"] == job["id"]
        assert client.get("/jobs/999", headers=headers).status_code == 404
        assert (tmp_path / "data" / "jobs.sqlite3").is_file() and (tmp_path / "data" / "queue.sqlite3").is_file()
        assert [r["conclusion"] for r in world.gh.repos["acme/served"].check_runs] == ["neutral"]


@contextmanager
def _serving(env: dict, cwd, workers: int):
    """``codemod serve`` on a free port, answering /healthz; stopped with SIGINT afterwards."""
    port = _port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "codemod", "serve", "--port", str(port), "--workers", str(workers)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        deadline = time.time() + 60
        while True:
            try:
                assert client.get("/healthz").json()["status"] == "ok"
                break
            except httpx.TransportError:
                assert time.time() < deadline and proc.poll() is None, (
                    proc.stdout.read() if proc.poll() is not None else ""
                )
                time.sleep(0.2)
        yield proc, client
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_jobs_is_not_found_without_an_admin_token(world, tmp_path):
    import asyncio

    from service.app import create_app
    from service.settings import Settings

    env = {k.lower(): v for k, v in world.env.items() if k not in ("CODEMOD_ADMIN_TOKEN", "CODEMOD_CACHE")}
    env["codemod_data_dir"] = str(tmp_path)
    app = create_app(Settings(_env_file=None, **env))

    async def get(path: str, **headers):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
            return (await client.get(path, headers=headers)).status_code

    assert asyncio.run(get("/jobs")) == 404
    assert asyncio.run(get("/")) == 404  # the status page too
    assert asyncio.run(get("/jobs/1", Authorization="Bearer x")) == 404
    assert asyncio.run(get("/healthz")) == 200


def test_the_webhook_role_starts_without_the_private_key_and_workers_still_need_it(world, tmp_path):
    """compose.yaml's webhook replicas: `serve --workers 0` told CODEMOD_APP_SLUG, no key given."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "PYTHONPATH": world.worker_env()["PYTHONPATH"],
        "GITHUB_APP_ID": world.env["GITHUB_APP_ID"],
        "GITHUB_WEBHOOK_SECRET": world.env["GITHUB_WEBHOOK_SECRET"],
        "CODEMOD_DATA_DIR": str(tmp_path / "data"),
        "CODEMOD_APP_SLUG": "torch-codemod",
    }
    key = "codemod: error: GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH must be set"
    for command, unset in (
        (["worker"], None),
        (["serve", "--workers", "1"], None),
        (["serve", "--workers", "0"], "CODEMOD_APP_SLUG"),
    ):  # no slug: it must ask GitHub
        run_env = {k: v for k, v in env.items() if k != unset}
        done = subprocess.run(
            [sys.executable, "-m", "codemod", *command],
            cwd=tmp_path,
            env=run_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (done.returncode, done.stderr.strip().splitlines()) == (2, [key]), command
    with _serving(env, tmp_path, workers=0) as (proc, client):
        _, sha = world.make_repo("keyless", CLEAN)
        world.http, saved = client, world.http
        try:
            reply = world.deliver(
                "push", world.push_payload("keyless", "0" * 40, sha, added=list(CLEAN)), delivery="keyless-1"
            )
        finally:
            world.http = saved
        assert reply.status_code == 202 and len(reply.json()["jobs"]) == 1  # verified, decided, queued
    lines = [json.loads(line) for line in proc.stdout.read().splitlines() if line.strip()]
    assert any(e.get("delivery") == "keyless-1" and e.get("outcome") == "queued" for e in lines)


def test_a_delivery_over_githubs_25_mb_is_refused_before_it_is_read_whole(world, tmp_path):
    import asyncio

    from service.app import create_app
    from service.settings import Settings

    env = {k.lower(): v for k, v in world.env.items() if k != "CODEMOD_CACHE"}
    env["codemod_data_dir"] = str(tmp_path)
    app = create_app(Settings(_env_file=None, **env))

    async def post(body: bytes):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
            return await client.post(
                "/webhook", content=body, headers={"X-GitHub-Event": "ping", "X-GitHub-Delivery": "big"}
            )

    too_big = asyncio.run(post(b" " * (25 * 1024 * 1024 + 1)))
    assert (too_big.status_code, too_big.json()) == (413, {"error": "payload larger than 25 MB"})
    unsigned = asyncio.run(post(b"{}"))
    assert (unsigned.status_code, unsigned.json()) == (401, {"error": "bad or missing X-Hub-Signature-256"})
    assert app.state.store.deliveries() == []


def test_the_webhook_answers_other_methods_405_with_allow_post(world, tmp_path):
    import asyncio

    from service.app import create_app
    from service.settings import Settings

    env = {k.lower(): v for k, v in world.env.items() if k != "CODEMOD_CACHE"}
    env["codemod_data_dir"] = str(tmp_path)
    app = create_app(Settings(_env_file=None, **env))

    async def call(method: str):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
            return await client.request(method, "/webhook")

    for method in ("GET", "PUT", "DELETE"):
        reply = asyncio.run(call(method))
        assert (reply.status_code, reply.headers.get("allow"), reply.json()) == (
            405,
            "POST",
            {"error": "the webhook accepts POST only"},
        ), method
    assert app.state.store.deliveries() == []
