"""``codemod register``: create the GitHub App from its manifest and write ``.env``.

GitHub's manifest flow: a page on this machine posts the manifest to GitHub's "new App" page; the
person confirms there; GitHub redirects the browser back to ``redirect_url?code=...&state=...``;
the code is exchanged (``POST /app-manifests/{code}/conversions``, valid for one hour) for the App's
id, slug, private key and webhook secret, which are written to ``.env`` with mode 0600.
"""

from __future__ import annotations

import html
import json
import secrets
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from codemod.writer import replace_file

from .manifest import api_url_for, manifest, new_app_url

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Register the torch-codemod GitHub App</title></head>
<body>
<h1>Register the torch-codemod GitHub App</h1>
<p>{where}. GitHub asks you to confirm the name, then sends you back here.</p>
<form id="register" action="{action}" method="post">
<input type="hidden" name="manifest" value="{manifest}">
<button type="submit" id="submit">Register GitHub App</button>
</form>
<pre id="permissions">{permissions}</pre>
</body></html>
"""

DONE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>torch-codemod registered</title></head>
<body><h1 id="result">{title}</h1><p>{text}</p></body></html>
"""


class RegisterError(RuntimeError):
    pass


def exchange(api_url: str, code: str, timeout: float = 30) -> dict:
    """The App's credentials for a manifest code (no authentication: the code is the credential)."""
    url = f"{api_url.rstrip('/')}/app-manifests/{urllib.parse.quote(code, safe='')}/conversions"
    request = urllib.request.Request(
        url,
        data=b"",
        method="POST",
        headers={"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        raise RegisterError(f"GitHub refused the manifest code ({exc.code}): {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise RegisterError(f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from None
    missing = [k for k in ("id", "slug", "pem") if not data.get(k)]
    if missing:
        raise RegisterError(f"GitHub's answer lacks {', '.join(missing)}")
    return data


def env_text(app: dict, api_url: str) -> str:
    pem = app["pem"].strip().replace("\n", "\\n")
    lines = [
        f"GITHUB_APP_ID={int(app['id'])}",
        f"CODEMOD_APP_SLUG={app['slug']}",
        f'GITHUB_PRIVATE_KEY="{pem}"',
        f"GITHUB_WEBHOOK_SECRET={app.get('webhook_secret') or ''}",
    ]
    if api_url != "https://api.github.com":
        lines.append(f"GITHUB_API_URL={api_url}")
    return "\n".join(lines) + "\n"


def write_env(path: Path, text: str) -> None:
    """Write ``.env`` atomically, mode 0600 from the start (never briefly readable by others)."""
    replace_file(path, text.encode(), 0o600)


class _Flow:
    def __init__(
        self, github_url: str, api_url: str, org: str | None, name: str, webhook_url: str | None, env_path: Path
    ) -> None:
        self.github_url, self.api_url, self.org, self.name = github_url, api_url, org, name
        self.webhook_url, self.env_path = webhook_url, env_path
        self.state = secrets.token_urlsafe(24)
        self.done = threading.Event()
        self.result: dict | None = None
        self.error: str | None = None

    def page(self, base: str) -> str:
        body = manifest(self.name, f"{base}/callback", webhook_url=self.webhook_url)
        action = f"{new_app_url(self.github_url, self.org)}?state={urllib.parse.quote(self.state)}"
        where = f"The App will belong to the organization {self.org}" if self.org else "The App will belong to you"
        return PAGE.format(
            where=html.escape(where),
            action=html.escape(action),
            manifest=html.escape(json.dumps(body)),
            permissions=html.escape(
                json.dumps({"permissions": body["default_permissions"], "events": body["default_events"]}, indent=1)
            ),
        )

    def callback(self, query: dict[str, list[str]]) -> tuple[int, str]:
        if self.done.is_set():
            return 409, DONE.format(title="Already registered", text="This page has done its work; close it.")
        if not secrets.compare_digest(query.get("state", [""])[0], self.state):
            return 400, DONE.format(title="Wrong state", text="This callback did not come from this registration.")
        code = query.get("code", [""])[0]
        if not code:
            return 400, DONE.format(title="No code", text="GitHub sent no code.")
        try:
            app = exchange(self.api_url, code)
            write_env(self.env_path, env_text(app, self.api_url))
        except (RegisterError, OSError) as exc:
            self.error = str(exc)
            self.done.set()
            return 502, DONE.format(title="Registration failed", text=html.escape(self.error))
        self.result = app
        self.done.set()
        text = (
            f"App {html.escape(app['slug'])} (id {int(app['id'])}) is registered; its credentials are in "
            f"{html.escape(str(self.env_path))}. Install it: {html.escape(app.get('html_url', ''))}/installations/new"
        )
        return 200, DONE.format(title="Registered", text=text)


def _handler(flow: _Flow):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # the query string holds the code: never logged
            pass

        def _send(self, status: int, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/":
                host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"
                self._send(200, flow.page(f"http://{host}"))
            elif url.path == "/callback":
                self._send(*flow.callback(urllib.parse.parse_qs(url.query)))
            else:
                self._send(404, DONE.format(title="Not found", text=""))

    return Handler


def register(
    *,
    org: str | None = None,
    github_url: str = "https://github.com",
    api_url: str | None = None,
    name: str | None = None,
    webhook_url: str | None = None,
    env_path: str | Path = ".env",
    host: str = "127.0.0.1",
    port: int = 0,
    timeout: float = 3600,
    open_browser: bool = True,
    ready=None,
) -> dict:
    """Serve the registration page until GitHub calls back (or ``timeout``); returns the App."""
    env_path = Path(env_path)
    if env_path.exists():
        raise RegisterError(f"{env_path} exists; move it away first (it may hold another App's key)")
    flow = _Flow(
        github_url,
        api_url or api_url_for(github_url),
        org,
        name or f"torch-codemod-{secrets.token_hex(3)}",
        webhook_url,
        env_path,
    )
    server = ThreadingHTTPServer((host, port), _handler(flow))
    url = f"http://{host}:{server.server_address[1]}/"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        print(f'Open {url} and press "Register GitHub App" (waiting up to {timeout / 60:.0f} min)', file=sys.stderr)
        if ready is not None:
            ready(url)
        elif open_browser:
            import webbrowser

            webbrowser.open(url)
        if not flow.done.wait(timeout):
            raise RegisterError("no callback from GitHub in time; run codemod register again")
        if flow.error:
            raise RegisterError(flow.error)
        return flow.result
    finally:
        server.shutdown()
        server.server_close()


def main(args) -> int:
    try:
        app = register(
            org=args.org,
            github_url=args.github_url,
            api_url=args.api_url,
            name=args.name,
            webhook_url=args.webhook_url,
            env_path=args.env,
            port=args.port,
            open_browser=not args.no_browser,
        )
    except (RegisterError, OSError) as exc:
        print(f"codemod: error: {exc}", file=sys.stderr)
        return 2
    print(f"registered {app['slug']} (id {app['id']}); wrote {args.env} (mode 0600)")
    return 0
