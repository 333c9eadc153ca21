"""compose.yaml, parsed and checked (no container engine runs compose here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
APP = ("webhook", "worker", "gpu-worker")


def _env(service: dict) -> dict:
    env = service.get("environment", {})
    return env if isinstance(env, dict) else dict(item.split("=", 1) for item in env)


def test_every_service_is_known_and_the_app_is_built_from_the_dockerfile():
    assert set(SERVICES) == {"proxy", "webhook", "worker", "gpu-worker", "redis", "postgres"}
    for name in APP:
        build = SERVICES[name]["build"]
        context = build if isinstance(build, str) else build["context"]
        assert (ROOT / context / "Dockerfile").is_file(), name


def test_webhook_replicas_behind_one_port():
    assert SERVICES["webhook"]["deploy"]["replicas"] >= 2
    assert "ports" not in SERVICES["webhook"], "replicas cannot share a published port"
    published = [(name, port) for name, s in SERVICES.items() for port in s.get("ports", [])]
    assert published == [("proxy", "8000:8000")]
    nginx = COMPOSE["configs"]["nginx"]["content"]
    assert re.search(r"upstream webhook \{ server webhook:8000; \}", nginx)
    assert "proxy_pass http://webhook;" in nginx
    assert SERVICES["webhook"]["command"][:2] == ["codemod", "serve"]
    assert SERVICES["webhook"]["command"][-2:] == ["--workers", "0"]


def test_workers_share_redis_and_postgres_and_are_limited():
    for name in ("worker", "gpu-worker"):
        service = SERVICES[name]
        assert service["command"][:2] == ["codemod", "worker"]
        env = _env(service)
        assert env["CODEMOD_QUEUE_URL"].startswith("redis://redis:")
        assert env["CODEMOD_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert "@postgres:" in env["CODEMOD_DATABASE_URL"]
        assert re.fullmatch(r"\d+[mg]", service["mem_limit"]), name
        assert 0 < service["pids_limit"] <= 4096, name
        for dep in ("redis", "postgres"):
            assert service["depends_on"][dep]["condition"] == "service_healthy"
    assert _env(SERVICES["webhook"])["CODEMOD_QUEUE_URL"] == _env(SERVICES["worker"])["CODEMOD_QUEUE_URL"]
    assert SERVICES["redis"]["image"].startswith("redis:")
    assert SERVICES["postgres"]["image"].startswith("postgres:15")
    for name in ("redis", "postgres"):
        assert "healthcheck" in SERVICES[name]


def test_gpu_worker_is_optional_and_has_its_own_queue():
    gpu = SERVICES["gpu-worker"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["build"]["args"]["TORCH_INDEX_URL"].startswith("https://download.pytorch.org/whl/cu")
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert _env(gpu).get("CODEMOD_QUEUE_NAME") not in (None, _env(SERVICES["worker"]).get("CODEMOD_QUEUE_NAME"))
    assert "profiles" not in SERVICES["worker"]


def test_cuda_repositories_reach_the_gpu_worker():
    """The webhook replicas and CPU workers use the default queue; a CPU worker hands a repository
    whose config says smoke.device = "cuda" to the CUDA queue, which is the one the GPU worker consumes."""
    from service.settings import Settings

    fields = Settings.model_fields
    cpu_queue = fields["codemod_queue_name"].default
    cuda_queue = fields["codemod_cuda_queue_name"].default
    for name in ("webhook", "worker"):
        env = _env(SERVICES[name])
        assert env.get("CODEMOD_QUEUE_NAME", cpu_queue) == cpu_queue, name
        assert env.get("CODEMOD_CUDA_QUEUE_NAME", cuda_queue) == cuda_queue, name
    assert _env(SERVICES["gpu-worker"])["CODEMOD_QUEUE_NAME"] == cuda_queue != cpu_queue


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_private_key_only_where_github_is_called(name):
    service = SERVICES[name]
    env = _env(service)
    gets_key = ".env" in service.get("env_file", []) or "GITHUB_PRIVATE_KEY" in env or "GITHUB_PRIVATE_KEY_PATH" in env
    # the workers call GitHub; the webhook replicas are told the App's slug so they never do
    assert gets_key == (name in ("worker", "gpu-worker"))
    if name == "webhook":
        assert env["CODEMOD_APP_SLUG"].startswith("${CODEMOD_APP_SLUG")
        assert set(env) >= {"GITHUB_APP_ID", "GITHUB_WEBHOOK_SECRET"}
    text = yaml.safe_dump(service)
    assert "PRIVATE KEY" not in text


def test_no_secret_value_in_the_file():
    text = (ROOT / "compose.yaml").read_text()
    # secrets come from .env by interpolation, never written into the file
    for match in re.finditer(r"(PASSWORD|SECRET|TOKEN)[A-Z_]*: (.+)", text):
        assert match.group(2).startswith("${"), match.group(0)
