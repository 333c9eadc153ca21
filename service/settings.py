"""Settings from the environment (and a ``.env`` file), validated once at start.

A missing or malformed variable is a :class:`SettingsError` whose message names it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(ValueError):
    pass


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False)

    github_app_id: int
    github_private_key: SecretStr | None = None
    github_private_key_path: Path | None = None
    github_webhook_secret: SecretStr
    github_api_url: str = "https://api.github.com"
    codemod_data_dir: Path = Path("codemod-data")
    codemod_queue_url: str | None = None  # default: SQLite in the data dir; redis://... for scale-out
    codemod_database_url: str | None = None  # default: SQLite in the data dir; postgresql+psycopg://...
    codemod_admin_token: SecretStr | None = None
    codemod_app_slug: str | None = None  # default: asked from GitHub (GET /app) at start
    # The App's branches start with this; pushes to them never trigger a job.
    codemod_branch_prefix: str = "codemod/"
    # The sandbox's bounds, the same variables `codemod verify` reads (codemod.verify.settings):
    # repository-chosen requirements are installed (in the sandbox) only when the operator allows it,
    # and no smoke run takes longer than the maximum, whatever the repository's config says.
    codemod_allow_requirements: bool = True
    codemod_sandbox_max_timeout: float = Field(3600.0, gt=0)
    codemod_lease_seconds: float = Field(300.0, gt=0)  # a job's lease; a live worker renews it
    codemod_max_attempts: int = Field(3, ge=1)  # runs of one job before it is marked failed
    codemod_github_retries: int = Field(6, ge=0)  # per REST call (5xx, 429, secondary rate limits)
    codemod_github_backoff: float = Field(0.5, ge=0)  # urllib3 backoff factor, seconds
    # A secondary rate limit answered with neither Retry-After nor x-ratelimit-remaining 0:
    # GitHub asks to wait at least a minute before retrying.
    codemod_github_secondary_wait: float = Field(60.0, ge=0)
    codemod_writes_per_minute: int = Field(80, ge=1)  # content-creating requests (GitHub's limit: 80)
    # The queue this process's workers take jobs from (the GPU worker names the CUDA queue), and
    # the queue a CPU worker hands a repository to when its config says smoke.device = "cuda"
    # (empty: no routing; such a repository's smoke test then runs where it is).
    codemod_queue_name: str = Field("codemod-jobs", min_length=1, max_length=100)
    codemod_cuda_queue_name: str = Field("codemod-jobs-cuda", max_length=100)

    def has_private_key(self) -> bool:
        return self.github_private_key is not None or self.github_private_key_path is not None

    def private_key(self) -> str:
        if not self.has_private_key():
            raise SettingsError("GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH must be set")
        if self.github_private_key is not None:
            pem = self.github_private_key.get_secret_value().replace("\\n", "\n")
            name = "GITHUB_PRIVATE_KEY"
        else:
            name = "GITHUB_PRIVATE_KEY_PATH"
            try:
                pem = Path(self.github_private_key_path).read_text()
            except OSError as exc:
                raise SettingsError(f"{name}: cannot read {self.github_private_key_path}: {exc.strerror}") from exc
        if "-----BEGIN" not in pem or "PRIVATE KEY-----" not in pem:
            raise SettingsError(f"{name}: not a PEM private key")
        return pem

    @property
    def database_url(self) -> str:
        return self.codemod_database_url or f"sqlite:///{(self.codemod_data_dir / 'jobs.sqlite3').resolve()}"

    @property
    def queue_url(self) -> str:
        return self.codemod_queue_url or f"sqlite:///{(self.codemod_data_dir / 'queue.sqlite3').resolve()}"

    def secrets(self) -> list[str]:
        """Values that must never appear in a log line, a PR, a job record or a smoke run."""
        out = [self.github_webhook_secret.get_secret_value()]
        if self.has_private_key():
            out.append(self.private_key().strip())
        if self.codemod_admin_token:
            out.append(self.codemod_admin_token.get_secret_value())
        return [s for s in out if s]


def load_settings(*, needs_key: bool = True, **overrides) -> Settings:
    """The settings, or a SettingsError naming the variable that is missing or invalid.

    ``needs_key``: this process calls GitHub (a worker, or a webhook replica that must ask
    GitHub for the App's slug). A webhook replica that is told ``CODEMOD_APP_SLUG`` only verifies,
    decides and enqueues, and is never given the private key."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [str(part) for part in err.get("loc", ()) if part != "__root__"]
            name = loc[0].upper() if loc else ""
            msg = err.get("msg", "invalid").removeprefix("Value error, ")
            problems.append(f"{name}: {msg}" if name else msg)
        raise SettingsError("; ".join(problems)) from None
    if needs_key or settings.has_private_key():
        settings.private_key()  # fail at start, not at the first job
    # A smoke run sees the file system read-only under another uid: nothing secret may be
    # readable by others there.
    for name, path in (("GITHUB_PRIVATE_KEY_PATH", settings.github_private_key_path), (".env", Path(".env"))):
        if path is not None and path.is_file() and path.stat().st_mode & 0o004:
            raise SettingsError(f"{name}: {path} is readable by other users, smoke tests included (chmod 600 {path})")
    settings.codemod_data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return settings
