"""HTTP load with a bounded client: `wrk` when it is installed (`apt-get install wrk`),
else a small keep-alive HTTP/1.1 client on asyncio. Both POST one fixed JSON body
over `connections` keep-alive connections for `seconds` and report requests/s and
latency percentiles (with 1 connection, the latency of an unloaded server)."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
from urllib.parse import urlparse

WRK = shutil.which("wrk")

_LUA = r"""
wrk.method = "POST"
wrk.body = [==[%(body)s]==]
%(headers)s
done = function(summary, latency, requests)
  io.write(string.format(
    'BENCHJSON {"requests": %%d, "duration_us": %%d, "status_errors": %%d, "socket_errors": %%d, ' ..
    '"p50_us": %%d, "p95_us": %%d, "p99_us": %%d, "max_us": %%d}\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""


def tool() -> str:
    return "wrk" if WRK else "python asyncio client (wrk not installed)"


def load(url: str, body: dict, headers: dict[str, str], connections: int, seconds: float) -> dict:
    payload = json.dumps(body)
    headers = {"Content-Type": "application/json", **headers}
    if WRK:
        return _wrk(url, payload, headers, connections, seconds)
    return asyncio.run(_python(url, payload, headers, connections, seconds))


def _result(requests: int, elapsed: float, errors: int, latencies_us: list[float] | None = None, **given) -> dict:
    out = {"requests": requests, "seconds": round(elapsed, 2), "rps": round(requests / elapsed) if elapsed else 0,
           "errors": errors}
    if latencies_us is not None:
        values = sorted(latencies_us)

        def pct(p):
            return values[min(len(values) - 1, int(len(values) * p))] if values else 0
        given = {"p50_us": pct(0.5), "p95_us": pct(0.95), "p99_us": pct(0.99), "max_us": values[-1] if values else 0}
    for key in ("p50", "p95", "p99", "max"):
        out[f"{key}_ms"] = round(given[f"{key}_us"] / 1000, 2)
    return out


def _wrk(url: str, payload: str, headers: dict[str, str], connections: int, seconds: float) -> dict:
    lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_LUA % {"body": payload, "headers": lines})
    try:
        done = subprocess.run([WRK, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
                               "-s", script.name, url], capture_output=True, text=True, timeout=seconds + 60)
    finally:
        os.unlink(script.name)
    line = next((l for l in done.stdout.splitlines() if l.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {done.stdout}\n{done.stderr}")
    figures = json.loads(line[len("BENCHJSON "):])
    return _result(figures["requests"], figures["duration_us"] / 1e6,
                   figures["status_errors"] + figures["socket_errors"],
                   **{k: v for k, v in figures.items() if k.endswith("_us") and k != "duration_us"})


async def _python(url: str, payload: str, headers: dict[str, str], connections: int, seconds: float) -> dict:
    parsed = urlparse(url)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (f"POST {parsed.path or '/'} HTTP/1.1\r\nHost: {parsed.netloc}\r\n{head}"
               f"Content-Length: {len(payload.encode())}\r\n\r\n").encode() + payload.encode()
    latencies: list[float] = []
    errors = 0
    end = time.perf_counter() + seconds

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port)
        try:
            while time.perf_counter() < end:
                started = time.perf_counter()
                writer.write(request)
                status = await reader.readline()
                length = 0
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                latencies.append((time.perf_counter() - started) * 1e6)
                if b" 200 " not in status:
                    errors += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    return _result(len(latencies), time.perf_counter() - started, errors, latencies)
