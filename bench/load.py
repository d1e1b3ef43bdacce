"""Load generation: ``wrk`` when it is installed, else a small asyncio HTTP/1.1 client.

Both drive a fixed number of keep-alive connections for a fixed time, each connection
sending its next request as soon as the previous answer arrived (closed loop), and
report requests, errors and latency percentiles. The client runs on the same 2 cores as
the servers and PostgreSQL; wrk (C, epoll) costs far less CPU per request than the
Python client, so figures taken with the fallback are lower and say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

Headers = dict[str, str]
T = TypeVar("T")


@dataclass(frozen=True)
class GetSpec:
    """GET one of ``paths`` (chosen at random per request)."""

    paths: Sequence[str]
    headers: Headers = field(default_factory=dict)


@dataclass(frozen=True)
class ActivityPostSpec:
    """POST one purchase to ``path`` for a random one of ``members``, with an idempotency
    key unique to this run (``nonce``), dated now."""

    path: str
    members: Sequence[str]
    nonce: str
    headers: Headers = field(default_factory=dict)


Spec = GetSpec | ActivityPostSpec


@dataclass
class LoadResult:
    client: str
    connections: int
    seconds: float
    requests: int
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk_path() -> str | None:
    return shutil.which("wrk")


def wrk_version() -> str:
    path = wrk_path()
    if path is None:
        return "none"
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"wrk (\S+)", out.stdout + out.stderr)
    return f"wrk {match.group(1)}" if match else "wrk"


# -- wrk ---------------------------------------------------------------------------------


def _lua_str(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal here


def _lua_headers(headers: Headers) -> str:
    items = ", ".join(f"[{_lua_str(k)}] = {_lua_str(v)}" for k, v in headers.items())
    return "{" + items + "}"


_LUA_COMMON = r"""
local counter = 0
local next_tid = 1
function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
end
function init(args)
  math.randomseed(os.time() * 1000 + (tid or 0) * 7919)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, '
    .. '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p95_us": %d, '
    .. '"p99_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def _lua_script(spec: Spec) -> str:
    if isinstance(spec, GetSpec):
        paths = ", ".join(_lua_str(p) for p in spec.paths)
        return (
            f"local paths = {{{paths}}}\n"
            f"local headers = {_lua_headers(spec.headers)}\n" + _LUA_COMMON + "function request()\n"
            "  return wrk.format('GET', paths[math.random(#paths)], headers, nil)\n"
            "end\n"
        )
    members = ", ".join(_lua_str(m) for m in spec.members)
    headers = {**spec.headers, "Content-Type": "application/json"}
    return (
        f"local members = {{{members}}}\n"
        f"local headers = {_lua_headers(headers)}\n"
        f"local path = {_lua_str(spec.path)}\n"
        f"local nonce = {_lua_str(spec.nonce)}\n" + _LUA_COMMON + "function request()\n"
        "  counter = counter + 1\n"
        '  local body = string.format(\'{"type":"purchase","member_id":"%s",'
        '"idempotency_key":"%s-%d-%d","occurred_at":"%s","amount_minor":%d,'
        '"currency":"USD"}\',\n'
        "    members[math.random(#members)], nonce, tid, counter,\n"
        "    os.date('!%Y-%m-%dT%H:%M:%SZ'), math.random(500, 20000))\n"
        "  return wrk.format('POST', path, headers, body)\n"
        "end\n"
    )


def run_wrk(
    base_url: str, spec: Spec, *, connections: int, seconds: float, threads: int = 2
) -> LoadResult:
    path = wrk_path()
    assert path is not None
    with tempfile.TemporaryDirectory(prefix="tierwise-bench-") as tmp:
        script = Path(tmp) / "load.lua"
        script.write_text(_lua_script(spec))
        cmd = [
            path,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            base_url,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=seconds + 60)
    return _wrk_result(out, connections)


_LUA_BODIES = r"""
-- Replaces _LUA_COMMON's init: each thread (one connection) opens its own bodies and
-- reads one per request (reading them all first would start the threads before wrk's
-- clock). wrk calls request() once on the first thread before the run to check the
-- script, so that thread's first body is never sent; no body is ever sent twice.
local file
function init(args)
  file = assert(io.open(dir .. "/" .. tid .. ".ndjson", "r"))
end
function request()
  local body = file:read("*l")
  if body == nil then
    io.open(dir .. "/exhausted", "w"):close()
    wrk.thread:stop()
    return wrk.format("GET", "/bench-ran-out")  -- still sent: a 404, never a repeat
  end
  return wrk.format("POST", path, headers, body)
end
"""


@dataclass
class SentBodies:
    load: LoadResult
    non_2xx: int
    """Answers with a status outside 200-399 (counted in ``load.requests``)."""
    exhausted: bool
    """A sender ran out of bodies before the end (the figure is then wrong)."""


def run_wrk_bodies(
    base_url: str, path: str, headers: Headers, payloads: Sequence[Sequence[bytes]], seconds: float
) -> SentBodies:
    """POST prepared JSON ``payloads`` with wrk: connection ``i`` sends ``payloads[i]`` in
    order, one body per request, each at most once (one thread per connection, so each
    sender's order holds). ``seconds`` is rounded to whole seconds, as wrk takes them."""
    wrk = wrk_path()
    assert wrk is not None
    with tempfile.TemporaryDirectory(prefix="tierwise-bench-") as tmp:
        for i, bodies in enumerate(payloads, start=1):
            with open(Path(tmp) / f"{i}.ndjson", "wb") as f:
                for body in bodies:
                    if b"\n" in body:
                        raise ValueError("a body holds a line break")
                    f.write(body + b"\n")
        script = Path(tmp) / "bodies.lua"
        script.write_text(
            f"local dir = {_lua_str(tmp)}\n"
            f"local path = {_lua_str(path)}\n"
            f"local headers = {_lua_headers({**headers, 'Content-Type': 'application/json'})}\n"
            + _LUA_COMMON
            + _LUA_BODIES
        )
        connections = len(payloads)
        cmd = [
            wrk,
            f"-t{connections}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "30s",
            "-s",
            str(script),
            base_url,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=seconds + 90)
        exhausted = (Path(tmp) / "exhausted").exists()
    load = _wrk_result(out, connections)
    match = re.search(r'"status": (\d+)', out.stdout)
    return SentBodies(load, int(match.group(1)) if match else 0, exhausted)


def _wrk_result(out: subprocess.CompletedProcess[str], connections: int) -> LoadResult:
    match = re.search(r"BENCHJSON (\{.*\})", out.stdout)
    if match is None:
        raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")
    data = json.loads(match.group(1))
    errors = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
    return LoadResult(
        client="wrk",
        connections=connections,
        seconds=data["duration_us"] / 1e6,
        requests=data["requests"],
        errors=errors,
        p50_ms=data["p50_us"] / 1000,
        p95_ms=data["p95_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
    )


# -- the asyncio fallback ----------------------------------------------------------------


class RawConnection:
    """One keep-alive HTTP/1.1 connection; far cheaper per request than httpx."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> RawConnection:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self.writer.wait_closed()
            self.writer = None

    def encode(self, method: str, path: str, headers: Headers, body: bytes | None) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        length = 0
        chunked = False
        close = False
        for line in header_lines:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        if chunked:
            parts: list[bytes] = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            body = b"".join(parts)
        else:
            body = await self.reader.readexactly(length) if length else b""
        if close:
            await self.close()
        return status, body

    async def request(
        self, method: str, path: str, *, headers: Headers | None = None, body: bytes | None = None
    ) -> tuple[int, bytes]:
        return await self.send(self.encode(method, path, headers or {}, body))


def split_url(base_url: str) -> tuple[str, int]:
    match = re.match(r"http://([^:/]+):(\d+)", base_url)
    if match is None:
        raise ValueError(f"not an http://host:port URL: {base_url}")
    return match.group(1), int(match.group(2))


def _requests_for(
    spec: Spec,
) -> Callable[[RawConnection, int], tuple[str, str, Headers, bytes | None]]:
    if isinstance(spec, GetSpec):

        def get(_conn: RawConnection, _n: int) -> tuple[str, str, Headers, bytes | None]:
            return "GET", random.choice(spec.paths), spec.headers, None

        return get
    headers = {**spec.headers, "Content-Type": "application/json"}

    def post(_conn: RawConnection, n: int) -> tuple[str, str, Headers, bytes | None]:
        body = json.dumps(
            {
                "type": "purchase",
                "member_id": random.choice(spec.members),
                "idempotency_key": f"{spec.nonce}-py-{n}",
                "occurred_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "amount_minor": random.randint(500, 20000),
                "currency": "USD",
            }
        ).encode()
        return "POST", spec.path, headers, body

    return post


async def _run_python(base_url: str, spec: Spec, connections: int, seconds: float) -> LoadResult:
    host, port = split_url(base_url)
    make = _requests_for(spec)
    latencies: list[float] = []
    errors = 0
    counter = 0
    start = time.perf_counter()
    deadline = start + seconds

    async def worker() -> None:
        nonlocal errors, counter
        conn = await RawConnection(host, port).open()
        try:
            while time.perf_counter() < deadline:
                counter += 1
                method, path, headers, body = make(conn, counter)
                t0 = time.perf_counter()
                try:
                    status, _ = await conn.request(method, path, headers=headers, body=body)
                except (ConnectionError, asyncio.IncompleteReadError, OSError):
                    errors += 1
                    await conn.close()
                    continue
                latencies.append(time.perf_counter() - t0)
                if status >= 400:
                    errors += 1
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    return LoadResult(
        client="python",
        connections=connections,
        seconds=elapsed,
        requests=len(latencies),
        errors=errors,
        **percentiles_ms(latencies),
    )


async def _read_each(base_url: str, spec: GetSpec, connections: int) -> int:
    host, port = split_url(base_url)
    todo = iter(spec.paths)
    errors = 0

    async def worker() -> None:
        nonlocal errors
        conn = await RawConnection(host, port).open()
        try:
            for path in todo:
                status, _ = await conn.request("GET", path, headers=spec.headers, body=None)
                if status >= 400:
                    errors += 1
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return errors


def read_each(base_url: str, spec: GetSpec, *, connections: int) -> int:
    """GET every one of ``spec.paths`` once, over ``connections`` connections; the number
    of answers that were errors."""
    errors: int = run_async(_read_each(base_url, spec, connections))
    return errors


def percentiles_ms(latencies: Sequence[float]) -> dict[str, float]:
    if len(latencies) < 2:
        only = latencies[0] * 1000 if latencies else 0.0
        return {"p50_ms": only, "p95_ms": only, "p99_ms": only}
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"p50_ms": cuts[49] * 1000, "p95_ms": cuts[94] * 1000, "p99_ms": cuts[98] * 1000}


def run_python(base_url: str, spec: Spec, *, connections: int, seconds: float) -> LoadResult:
    result: LoadResult = run_async(_run_python(base_url, spec, connections, seconds))
    return result


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop when it is installed (it is, with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def run_load(
    base_url: str, spec: Spec, *, connections: int, seconds: float, client: str
) -> LoadResult:
    if client == "wrk":
        return run_wrk(base_url, spec, connections=connections, seconds=seconds)
    return run_python(base_url, spec, connections=connections, seconds=seconds)


def cpu_count() -> int:
    return os.cpu_count() or 1
