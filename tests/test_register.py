"""``codemod register``: the page is driven in headless chromium against a fake GitHub (a real HTTP
server on loopback that answers the manifest flow in GitHub's documented shapes)."""

from __future__ import annotations

import json
import secrets
import stat
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from service.manifest import EVENTS, PERMISSIONS, manifest
from service.register import RegisterError, register
from service.settings import Settings

import headless

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEfake" + secrets.token_hex(16) + "\n-----END RSA PRIVATE KEY-----\n"


class FakeGitHub:
    """``POST /settings/apps/new`` (the person confirms at once) and the code conversion."""

    def __init__(self, refuse: bool = False) -> None:
        self.manifests: list[tuple[str, dict]] = []
        self.codes: dict[str, dict] = {}
        self.conversions: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if url.path.endswith("/settings/apps/new"):
                    form = urllib.parse.parse_qs(body.decode())
                    data = json.loads(form["manifest"][0])
                    fake.manifests.append((url.path, data))
                    code = secrets.token_hex(10)
                    fake.codes[code] = data
                    state = urllib.parse.parse_qs(url.query)["state"][0]
                    self.send_response(302)
                    self.send_header("Location", f"{data['redirect_url']}?code={code}&state={state}")
                    self.end_headers()
                    return
                parts = url.path.split("/")
                if url.path.startswith("/api/v3/app-manifests/") and parts[-1] == "conversions":
                    code = parts[-2]
                    fake.conversions.append(code)
                    data = fake.codes.pop(code, None)
                    if data is None or refuse:
                        self._json(404, {"message": "Not Found"})
                    else:
                        self._json(
                            201,
                            {
                                "id": 4242,
                                "slug": data["name"],
                                "name": data["name"],
                                "pem": PEM,
                                "webhook_secret": "whsec-from-github",
                                "client_id": "Iv1.x",
                                "client_secret": "cs",
                                "html_url": f"{fake.url}/apps/{data['name']}",
                            },
                        )
                    return
                self._json(404, {"message": "Not Found"})

            def _json(self, status: int, data: dict) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def browser():
    if headless.CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    b = headless.Browser()
    yield b
    b.close()


def _run(fake: FakeGitHub, browser, env: Path, **kw) -> tuple[dict | None, Exception | None, bytes]:
    outcome: dict = {}
    ready = threading.Event()

    def target():
        try:
            outcome["app"] = register(
                github_url=fake.url,
                env_path=env,
                timeout=60,
                name="codemod-test-app",
                ready=lambda url: (outcome.__setitem__("url", url), ready.set()),
                **kw,
            )
        except Exception as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc
            ready.set()

    thread = threading.Thread(target=target)
    thread.start()
    assert ready.wait(30)
    browser.goto(outcome["url"])
    assert browser.evaluate("document.querySelector('#submit').textContent") == "Register GitHub App"
    browser.evaluate("document.querySelector('#submit').click()")
    browser.wait_for("document.querySelector('#result') !== null")
    shot = browser.screenshot()
    thread.join(60)
    return outcome.get("app"), outcome.get("error"), shot


def test_register_in_a_browser_writes_env_0600(tmp_path, browser):
    fake = FakeGitHub()
    env = tmp_path / ".env"
    try:
        app, error, shot = _run(fake, browser, env, org="acme", webhook_url="https://codemod.example.com/webhook")
    finally:
        fake.close()
    assert error is None, error
    assert shot.startswith(b"\x89PNG")
    assert browser.evaluate("document.querySelector('#result').textContent") == "Registered"
    assert app["id"] == 4242
    # the manifest went to the organization's page, with exactly the App's permissions and events
    [(path, posted)] = fake.manifests
    assert path == "/organizations/acme/settings/apps/new"
    assert posted["default_permissions"] == {
        "contents": "write",
        "pull_requests": "write",
        "checks": "write",
        "issues": "write",
        "metadata": "read",
    }
    assert posted["default_events"] == ["push", "issue_comment", "pull_request"]
    assert posted["hook_attributes"] == {"url": "https://codemod.example.com/webhook", "active": True}
    assert posted["redirect_url"].startswith("http://127.0.0.1:") and posted["redirect_url"].endswith("/callback")
    assert len(fake.conversions) == 1
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    settings = Settings(_env_file=env)
    assert settings.github_app_id == 4242
    assert settings.codemod_app_slug == "codemod-test-app"
    assert settings.github_webhook_secret.get_secret_value() == "whsec-from-github"
    assert settings.private_key().strip() == PEM.strip()
    assert settings.github_api_url == f"{fake.url}/api/v3"


def test_a_refused_code_writes_nothing(tmp_path, browser):
    fake = FakeGitHub(refuse=True)
    env = tmp_path / ".env"
    try:
        app, error, _ = _run(fake, browser, env)
    finally:
        fake.close()
    assert app is None
    assert isinstance(error, RegisterError) and "404" in str(error)
    assert browser.evaluate("document.querySelector('#result').textContent") == "Registration failed"
    assert not env.exists() and list(tmp_path.iterdir()) == []


def test_an_existing_env_is_never_overwritten(tmp_path):
    env = tmp_path / ".env"
    env.write_text("GITHUB_APP_ID=1\n")
    with pytest.raises(RegisterError, match="exists"):
        register(env_path=env, open_browser=False, timeout=1)
    assert env.read_text() == "GITHUB_APP_ID=1\n"


def test_manifest_never_lists_events_github_sends_anyway():
    body = manifest("x", "http://127.0.0.1/callback")
    assert "installation" not in body["default_events"]
    assert "installation_repositories" not in body["default_events"]
    assert body["default_events"] == EVENTS and body["default_permissions"] == PERMISSIONS
    assert "hook_attributes" not in body and body["public"] is False


def test_cli_refuses_an_existing_env_with_one_line(tmp_path):
    import subprocess
    import sys

    env = tmp_path / ".env"
    env.write_text("GITHUB_APP_ID=1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "codemod", "register", "--env", str(env), "--no-browser"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"codemod: error: {env} exists; move it away first (it may hold another App's key)"
    ]
