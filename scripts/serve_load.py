#!/usr/bin/env python3
"""A bounded load test of `jielong serve` on loopback.

One client first (its requests one after another), then CLIENTS concurrent streaming clients
making REQUESTS requests each. Every request must complete without an error; the script
reports time to first token (p50, p99) and aggregate tokens per second, and fails unless the
concurrent clients reach at least MIN_SPEEDUP times one client's tokens per second (what
continuous batching is for).

Usage (needs httpx: pip install -r tests/python/requirements.txt):
  python3 scripts/serve_load.py --bin target/release/jielong            # starts the server
  python3 scripts/serve_load.py --url http://127.0.0.1:8080             # a running server
Options: --clients 64 --requests 3 --max-tokens 64 --min-speedup 4 --json out.json
"""

import argparse
import asyncio
import json
import pathlib
import statistics
import subprocess
import sys
import time

import httpx

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROMPTS = ["ROMEO:", "JULIET:\n", "KING RICHARD III:\n", "First Citizen:\n", "HAMLET:\nTo", "MENENIUS:\n"]


def start_server(binary: str, model: str, extra: list[str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [binary, "serve", "--model", model, "--port", "0", *extra],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in proc.stderr:
        sys.stderr.write(line)
        if "listening on " in line:
            return proc, line.split("listening on ", 1)[1].strip()
    raise SystemExit("the server did not start")


async def one_request(client: httpx.AsyncClient, url: str, model: str, k: int, max_tokens: int) -> dict:
    """A streamed completion: its time to first token, tokens, time and error (if any)."""
    body = {
        "model": model,
        "prompt": PROMPTS[k % len(PROMPTS)],
        "max_tokens": max_tokens,
        "temperature": 1.0,
        "seed": k,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first = None
    tokens = 0
    try:
        async with client.stream("POST", url + "/v1/completions", json=body) as r:
            if r.status_code != 200:
                return {"error": f"HTTP {r.status_code}: {(await r.aread())[:200]!r}"}
            async for line in r.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    return {"error": chunk["error"]["message"]}
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
                if first is None and any(c.get("text") for c in chunk.get("choices", [])):
                    first = time.perf_counter() - started
    except httpx.HTTPError as e:
        return {"error": repr(e)}
    if tokens != max_tokens:
        return {"error": f"{tokens} tokens instead of {max_tokens}"}
    return {"ttft": first, "tokens": tokens, "seconds": time.perf_counter() - started}


async def run_clients(url: str, model: str, clients: int, requests: int, max_tokens: int) -> dict:
    limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients + 8)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0), limits=limits) as client:

        async def client_loop(c: int) -> list[dict]:
            return [await one_request(client, url, model, c * requests + r, max_tokens) for r in range(requests)]

        started = time.perf_counter()
        results = [r for rs in await asyncio.gather(*(client_loop(c) for c in range(clients))) for r in rs]
        wall = time.perf_counter() - started
    ok = [r for r in results if "error" not in r]
    errors = [r["error"] for r in results if "error" in r]
    ttft = sorted(r["ttft"] for r in ok if r["ttft"] is not None)
    tokens = sum(r["tokens"] for r in ok)

    def pct(q: float) -> float:
        return ttft[min(len(ttft) - 1, int(q * len(ttft)))] if ttft else float("nan")

    return {
        "clients": clients,
        "requests": len(results),
        "errors": errors,
        "tokens": tokens,
        "seconds": wall,
        "tokens_per_second": tokens / wall,
        "ttft_p50": pct(0.50),
        "ttft_p99": pct(0.99),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="a running server (else one is started with --bin)")
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "jielong"))
    ap.add_argument("--model", default="shakespeare-char", help="the model name (and folder under models/)")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--requests", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--min-speedup", type=float, default=4.0)
    ap.add_argument("--server-arg", action="append", default=[], help="extra flags for jielong serve")
    ap.add_argument("--json", help="also write the figures to this file")
    a = ap.parse_args()

    proc = None
    url = a.url
    if url is None:
        proc, url = start_server(a.bin, str(ROOT / "models" / a.model), a.server_arg)
    try:
        single = asyncio.run(run_clients(url, a.model, 1, a.requests, a.max_tokens))
        many = asyncio.run(run_clients(url, a.model, a.clients, a.requests, a.max_tokens))
    finally:
        if proc:
            proc.kill()
            proc.wait()
    speedup = many["tokens_per_second"] / single["tokens_per_second"]
    for r in (single, many):
        print(
            f"{r['clients']:>3} client(s) x {a.requests} requests x {a.max_tokens} tokens: "
            f"{r['requests'] - len(r['errors'])}/{r['requests']} ok, {r['tokens']} tokens in {r['seconds']:.2f} s = "
            f"{r['tokens_per_second']:.0f} tokens/s; time to first token p50 {1000 * r['ttft_p50']:.0f} ms, "
            f"p99 {1000 * r['ttft_p99']:.0f} ms"
        )
        for e in r["errors"][:5]:
            print("   error:", e)
    print(f"speed-up of {a.clients} clients over one: {speedup:.1f}x (needed: {a.min_speedup}x)")
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps({"single": single, "many": many, "speedup": speedup}, indent=2))
    failed = single["errors"] or many["errors"] or speedup < a.min_speedup
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
