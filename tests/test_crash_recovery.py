"""A hard kill of a loaded server loses no acknowledged evaluation.

A real server process (``python -m service.cli serve``) on a temporary SQLite database takes
concurrent submissions; it is SIGKILLed while requests are in flight, restarted on the same
database, and every evaluation that had been answered with 201 must be there, byte for byte.
"""

import os
import signal
import sqlite3
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing

import httpx

from servers import start_server
from service.store.keys import create_key
from service.store.database import Database

WORKERS = 16
ACKNOWLEDGED_BEFORE_KILL = 150


def stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.kill()
    server.wait(timeout=10)


def test_every_acknowledged_evaluation_survives_a_hard_kill(tmp_path, full_case):
    database_path = tmp_path / "coverage-criteria.db"
    database = Database(f"sqlite:///{database_path}")
    database.migrate()
    _, key = create_key(database, "intake", label="crash test")
    database.dispose()
    env = {
        **os.environ,
        "COVERAGE_CRITERIA_DATA_DIR": str(tmp_path),
        "COVERAGE_CRITERIA_DATABASE_URL": f"sqlite:///{database_path}",
    }
    headers = {"X-API-Key": key}
    acknowledged: dict[str, bytes] = {}
    unexpected: list[int] = []
    lock = threading.Lock()
    killed = threading.Event()

    def submit_until_the_server_dies(worker: int, base_url: str) -> None:
        with httpx.Client(base_url=base_url, headers=headers, timeout=30) as http:
            number = 0
            while not killed.is_set():
                case = {**full_case, "external_id": f"CRASH-{worker}-{number}"}
                try:
                    response = http.post("/v1/evaluations", json=case)
                except httpx.TransportError:
                    return
                with lock:
                    if response.status_code == 201:
                        acknowledged[response.json()["evaluation_id"]] = response.content
                    else:
                        unexpected.append(response.status_code)
                number += 1

    server, base_url = start_server(env, tmp_path / "server.log")
    try:
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            load = [pool.submit(submit_until_the_server_dies, worker, base_url) for worker in range(WORKERS)]
            deadline = time.monotonic() + 60
            while len(acknowledged) < ACKNOWLEDGED_BEFORE_KILL and time.monotonic() < deadline:
                time.sleep(0.01)
            server.send_signal(signal.SIGKILL)
            server.wait(timeout=10)
            killed.set()
            for worker in load:
                worker.result()
    finally:
        stop(server)

    assert unexpected == []
    assert len(acknowledged) >= ACKNOWLEDGED_BEFORE_KILL

    restarted, base_url = start_server(env, tmp_path / "server.log")
    try:
        with httpx.Client(base_url=base_url, headers=headers, timeout=30) as http:
            lost = []
            for evaluation_id, content in acknowledged.items():
                response = http.get(f"/v1/evaluations/{evaluation_id}")
                if response.status_code != 200 or response.content != content:
                    lost.append((evaluation_id, response.status_code))
    finally:
        stop(restarted)

    assert lost == []
    with closing(sqlite3.connect(database_path)) as check:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
