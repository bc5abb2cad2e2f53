"""Fetching against a loopback server: MB/s, files/s and CPU per file at 1, 8 and 64 connections, and a
whole run on URL sources next to the same files read from disk.

    python bench/bench_fetch.py                    # 240 files to fetch, 48 clips per run, 3 repeats
    python bench/bench_fetch.py --files 400 --clips 96 --repeats 1
    python bench/bench_fetch.py --baseline 07ecc6e --skip-runs   # this code next to another revision's

``--baseline REV`` loads ``transforms/fetch/`` as it was at git revision REV (``git show``, into a
temporary package beside this one) and fetches with both, interleaved, in this one process against the
same server: what this revision's checks (one URL reading, resolved-address checks, the deadline
watchdog, per-hop limits) cost, measured side by side.

The server (http.server, threaded, HTTP/1.1 keep-alive) runs in its own process, so the CPU figures are
the fetching process's alone (time.process_time: every thread of it). Fetching goes through the real
ShardFetcher (urllib3, cache writes, SHA-256, status rows) into a fresh cache each time; "MB/s" is
payload bytes per wall second. The two runs use the same generic manifest, once with the files' paths
and once with their URLs, on FnApiRunner in this process; the URL run includes its fetch stage. Medians
of the repeats are printed, configurations interleaved.
"""

from __future__ import annotations

import argparse
import importlib
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

from clap_corpus.pipeline.demo import synth
from clap_corpus.pipeline.launch.run import run_corpus
from clap_corpus.transforms.fetch.batch import FetchItem, ShardFetcher
from clap_corpus.transforms.fetch.cache import ContentCache
from clap_corpus.transforms.fetch.config import FetchOptions
from clap_corpus.transforms.fetch.http import FetchPolicy

FORMATS = ("mp3", "flac", "ogg", "m4a", "wav", "opus")


def make_files(folder: str, n: int) -> list[str]:
    """n real encoded files of 2-12 s, written to ``folder``; their names."""
    names = []
    for i in range(n):
        fmt = FORMATS[i % len(FORMATS)]
        seconds = 2.0 + (i * 7) % 11
        rate = 44_100 if fmt != "opus" else 48_000
        sig = synth.chirp(200.0 + 13 * i, 2000.0 + 17 * i, seconds, rate, amplitude=0.4)
        name = f"f{i:04d}.{fmt}"
        with open(os.path.join(folder, name), "wb") as f:
            f.write(synth.encode_audio(sig, rate, fmt))
        names.append(name)
    return names


def serve(folder: str, port_out) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # headers and body go out in two writes: with Nagle on, each response waits out a delayed ACK
        disable_nagle_algorithm = True

        def log_message(self, *args):
            pass

        def do_GET(self):
            path = os.path.join(folder, os.path.basename(self.path))
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    class Server(ThreadingHTTPServer):
        # listen()'s backlog is taken in the constructor: set here, not on the instance, or 8 and more
        # connections opened at once overflow the default 5 and wait out a SYN retransmit (1 s)
        request_queue_size = 256
        daemon_threads = True

    httpd = Server(("127.0.0.1", 0), Handler)
    port_out.put(httpd.server_address[1])
    httpd.serve_forever()


THIS = types.SimpleNamespace(
    FetchOptions=FetchOptions,
    ShardFetcher=ShardFetcher,
    ContentCache=ContentCache,
    FetchPolicy=FetchPolicy,
    FetchItem=FetchItem,
    private={"allow_private_networks": True},  # the server is on 127.0.0.1
)


def load_baseline(rev: str, folder: str) -> types.SimpleNamespace:
    """transforms/fetch/ at git revision ``rev`` as the package ``fetch_baseline`` (its imports of
    itself rewritten; everything else it imports is this tree's)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    package = os.path.join(folder, "fetch_baseline")
    os.makedirs(package)
    names = subprocess.run(
        ["git", "ls-tree", "--name-only", f"{rev}:transforms/fetch"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for name in names:
        if name.endswith(".py"):
            text = subprocess.run(
                ["git", "show", f"{rev}:transforms/fetch/{name}"],
                cwd=root,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            with open(os.path.join(package, name), "w") as f:
                f.write(text.replace("clap_corpus.transforms.fetch", "fetch_baseline"))
    sys.path.insert(0, folder)
    mod = {m: importlib.import_module(f"fetch_baseline.{m}") for m in ("batch", "cache", "config", "http")}
    return types.SimpleNamespace(
        FetchOptions=mod["config"].FetchOptions,
        ShardFetcher=mod["batch"].ShardFetcher,
        ContentCache=mod["cache"].ContentCache,
        FetchPolicy=mod["http"].FetchPolicy,
        FetchItem=mod["batch"].FetchItem,
        private={},
    )


def fetch_once(
    base: str, names: list[str], connections: int, cache: str, impl: types.SimpleNamespace = THIS
) -> dict[str, float]:
    options = impl.FetchOptions(connections=connections, max_per_host=connections, retries=0, **impl.private)
    fetcher = impl.ShardFetcher(options, impl.ContentCache(cache), {"b": impl.FetchPolicy(options)})
    items = [impl.FetchItem("b", i, f"k{i}", f"{base}/{n}") for i, n in enumerate(names)]
    w0, c0 = time.monotonic(), time.process_time()
    out = fetcher.run(items, {})
    wall, cpu = time.monotonic() - w0, time.process_time() - c0
    assert all(o.status.status == "ok" for o in out), [o.status for o in out if o.status.status != "ok"][:3]
    total = sum(o.status.bytes for o in out)
    return {"wall": wall, "cpu": cpu, "bytes": total, "files": len(out)}


def run_once(spec: str, out: str) -> dict[str, float]:
    w0, c0 = time.monotonic(), time.process_time()
    s = run_corpus(spec, out, ["--runner=FnApiRunner"], start_check=False)
    assert s["accounting_ok"]
    return {"wall": time.monotonic() - w0, "cpu": time.process_time() - c0, "samples": s["samples"]}


def write_spec(folder: str, names: list[str], audio: list[str], tag: str) -> str:
    rows = [
        json.dumps({"audio": a, "id": n, "captions": [f"a chirp {n}"]})
        for n, a in zip(names, audio, strict=True)
    ]
    with open(os.path.join(folder, f"{tag}.jsonl"), "w") as f:
        f.write("\n".join(rows) + "\n")
    doc = {
        "corpus": "bench",
        "options": {
            "shard_size": 16,
            "formats": ["webdataset"],
            "split_proportions": {"train": 1.0},
            "fetch": {"allow_private_networks": True},  # the server is on 127.0.0.1
        },
        "sources": [
            {
                "name": "b",
                "adapter": "generic",
                "manifest": f"{tag}.jsonl",
                "audio_root": folder,
                "allowed_schemes": ["http"],
            }
        ],
    }
    path = os.path.join(folder, f"{tag}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(doc, f)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=240, help="files fetched per configuration")
    ap.add_argument("--clips", type=int, default=48, help="clips in each of the two runs")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline", metavar="REV", help="also fetch with transforms/fetch/ of git revision REV")
    ap.add_argument("--skip-runs", action="store_true", help="fetch only: no whole runs")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-fetch-")
    files = os.path.join(tmp, "files")
    os.makedirs(files)
    names = make_files(files, max(args.files, args.clips))
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    server = ctx.Process(target=serve, args=(files, q), daemon=True)
    server.start()
    base = f"http://127.0.0.1:{q.get(timeout=60)}"
    impls = {"this": THIS}
    if args.baseline:
        impls[args.baseline] = load_baseline(args.baseline, os.path.join(tmp, "baseline"))
    try:
        fetched: dict[tuple[int, str], list[dict[str, float]]] = {
            (c, name): [] for c in (1, 8, 64) for name in impls
        }
        runs: dict[str, list[dict[str, float]]] = {"disk": [], "url": []}
        clips = names[: args.clips]
        disk_spec = write_spec(files, clips, clips, "disk")
        url_spec = write_spec(files, clips, [f"{base}/{n}" for n in clips], "url")
        if not args.skip_runs:
            run_once(disk_spec, os.path.join(tmp, "warm-up"))  # imports and first-run costs, not counted
        for name, impl in impls.items():  # warm-up: connections, imports
            fetch_once(base, names[:8], 8, os.path.join(tmp, f"warm-{name}"), impl)
        for r in range(args.repeats):
            # alternate which implementation goes first, so neither always meets a warmer page cache
            order = list(impls.items()) if r % 2 == 0 else list(reversed(impls.items()))
            for c in (1, 8, 64):
                for name, impl in order:
                    fetched[(c, name)].append(
                        fetch_once(
                            base, names[: args.files], c, os.path.join(tmp, f"cache-{name}-{c}-{r}"), impl
                        )
                    )
            if not args.skip_runs:
                for tag, spec in (("disk", disk_spec), ("url", url_spec)):
                    runs[tag].append(run_once(spec, os.path.join(tmp, f"out-{tag}-{r}")))
    finally:
        server.terminate()
    med = statistics.median
    mb = next(iter(fetched.values()))[0]["bytes"] / 1e6
    print(f"fetch: {args.files} files, {mb:.1f} MB, loopback server in its own process")
    print(f"medians of {args.repeats} repeats")
    print(f"{'connections':>12}{'code':>10}{'files/s':>10}{'MB/s':>10}{'CPU ms/file':>13}{'wall s':>9}")
    for (c, name), rs in fetched.items():
        wall = med(x["wall"] for x in rs)
        cpu_ms = med(1000 * x["cpu"] / x["files"] for x in rs)
        print(f"{c:>12}{name:>10}{args.files / wall:>10.1f}{mb / wall:>10.1f}{cpu_ms:>13.2f}{wall:>9.2f}")
    if args.skip_runs:
        return
    print(f"\nrun, {args.clips} clips, FnApiRunner: the same files from disk and by URL")
    print(f"{'audio':>12}{'wall s':>10}{'CPU s':>10}{'samples':>9}")
    for tag, rs in runs.items():
        wall, cpu = med(x["wall"] for x in rs), med(x["cpu"] for x in rs)
        print(f"{tag:>12}{wall:>10.1f}{cpu:>10.1f}{rs[0]['samples']:>9}")


if __name__ == "__main__":
    main()
