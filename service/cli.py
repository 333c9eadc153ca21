"""``codemod serve`` and ``codemod worker``.

``serve`` runs everything in one process tree on the embedded default: the FastAPI app under
uvicorn, the job store and queue in SQLite files under ``CODEMOD_DATA_DIR``, and N worker
processes (restarted if one dies). ``worker`` runs workers alone, for scale-out.
"""

from __future__ import annotations

import gc
import logging
import signal
import subprocess
import sys
import threading

from . import logs
from .settings import SettingsError, load_settings

EXIT_USAGE = 2


def serve(host: str, port: int, workers: int) -> int:
    try:
        # The webhook role (``--workers 0``, told the App's slug) never calls GitHub: no key needed.
        settings = load_settings(needs_key=False)
        if workers > 0 or settings.codemod_app_slug is None:
            settings.private_key()
    except SettingsError as exc:
        print(f"codemod: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    import uvicorn

    from .app import create_app

    logs.configure(settings.secrets())
    app = create_app(settings)
    children: list[subprocess.Popen] = []
    stop = threading.Event()

    def supervise() -> None:
        for _ in range(workers):
            children.append(subprocess.Popen([sys.executable, "-m", "codemod", "worker"]))
        while not stop.wait(1.0):
            for i, child in enumerate(children):
                if child.poll() is not None and not stop.is_set():
                    logging.getLogger("codemod.serve").warning(
                        "worker %s exited (%s); restarting", child.pid, child.returncode
                    )
                    children[i] = subprocess.Popen([sys.executable, "-m", "codemod", "worker"])

    threading.Thread(target=supervise, daemon=True).start()
    # What is loaded now lives as long as the server: out of the collector's way, so its full
    # collections scan only what requests leave behind (they stalled a burst of deliveries 100 ms)
    gc.collect()
    gc.freeze()
    try:
        uvicorn.run(
            app, host=host, port=port, log_level="warning", log_config=None
        )  # its lines too: JSON (service.logs)
    finally:
        stop.set()
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
    return 0


def worker(threads: int, drain: bool) -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"codemod: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from .worker import run_workers

    logs.configure(settings.secrets())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        run_workers(settings, threads, stop, drain=drain)
    except KeyboardInterrupt:
        stop.set()
    return 0
