"""``coverage-criteria serve --workers N``: several processes behind one port, and connections that
get TCP_NODELAY (which uvicorn's own worker socket would not give them)."""

import asyncio
import os
import signal
import socket
from concurrent.futures import ThreadPoolExecutor

import httpx
import uvicorn

from service.app import tcp_listener
from service.store.keys import create_key
from service.store.database import Database
from servers import WAIT_SECONDS, start_server


def test_worker_connections_get_tcp_nodelay():
    listener = tcp_listener(uvicorn.Config("service.app:create_app", factory=True, host="127.0.0.1", port=0))

    async def nodelay_of_an_accepted_connection() -> int:
        accepted = asyncio.get_running_loop().create_future()

        class Note(asyncio.Protocol):
            def connection_made(self, transport):
                accepted.set_result(transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Note, sock=listener)
        async with server:
            _, writer = await asyncio.open_connection(*listener.getsockname())
            writer.close()
            return await asyncio.wait_for(accepted, WAIT_SECONDS)

    assert listener.proto == socket.IPPROTO_TCP
    assert asyncio.run(nodelay_of_an_accepted_connection()) == 1


def test_serve_with_two_workers_evaluates_and_stops_on_sigterm(tmp_path, full_case):
    database_url = f"sqlite:///{tmp_path / 'coverage-criteria.db'}"
    database = Database(database_url)
    database.migrate()
    _, key = create_key(database, "intake")
    database.dispose()
    env = {**os.environ, "COVERAGE_CRITERIA_DATA_DIR": str(tmp_path), "COVERAGE_CRITERIA_DATABASE_URL": database_url}

    server, base_url = start_server(env, tmp_path / "server.log", "--workers", "2")
    try:
        with httpx.Client(base_url=base_url, headers={"X-API-Key": key}, timeout=WAIT_SECONDS) as http:
            with ThreadPoolExecutor(max_workers=8) as pool:
                responses = list(pool.map(
                    lambda n: http.post("/v1/evaluations", json={**full_case, "external_id": f"WORKERS-{n}"}), range(40)
                ))
    finally:
        server.send_signal(signal.SIGTERM)
        returncode = server.wait(timeout=WAIT_SECONDS)

    assert [r.status_code for r in responses] == [201] * 40
    assert [r.json()["external_id"] for r in responses] == [f"WORKERS-{n}" for n in range(40)]
    assert returncode == 0
    assert (tmp_path / "server.log").read_text().count("Application startup complete.") == 2
