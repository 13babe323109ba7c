#!/usr/bin/env python3
"""Crawl a real Debian documentation tree served on 127.0.0.1: kbsearch's crawler vs the naive baseline.

Serves ``/usr/share/doc/python3.11/html`` (``apt-get install python3.11-doc``) with nginx (or
``python3 -m http.server`` with ``--server python``) on a free loopback port and runs, each in its
own process while the whole process tree's RSS is sampled:

* baseline: one thread, ``requests.get`` + ``BeautifulSoup(r.text, "html.parser")`` + ``get_text``,
  following every in-scope link (same host and path prefix), fragments dropped;
* kbsearch, extraction only (``dry_run``: fetch + parse + sections, nothing written) — the like-for-
  like comparison with the baseline, which writes nothing either;
* kbsearch into a fresh Whoosh index (end to end), then a recrawl of the unchanged site.

Then it checks the FAQ criterion: the exact text of every question heading in ``faq/*.html``,
searched in the index, must return that question's ``faq/...html#anchor`` section first.

    .venv/bin/python bench/crawl_bench.py            # nginx, python3.11-doc
    .venv/bin/python bench/crawl_bench.py --server python --site /usr/share/doc/python3.11/html
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit

DEFAULT_SITE = Path("/usr/share/doc/python3.11/html")


# -- the runs (each in its own process) ----------------------------------------------------------
def run_baseline(start: str) -> dict:
    """The naive crawler of the issue: one thread, requests.get, BeautifulSoup(r.text, "html.parser")."""
    import requests
    from bs4 import BeautifulSoup

    prefix = start.rpartition("/")[0] + "/"
    host = urlsplit(start).netloc
    seen, queue = {start}, deque([start])
    pages = chars = fetched = 0
    t0 = time.perf_counter()
    while queue:
        url = queue.popleft()
        try:
            r = requests.get(url, timeout=30)
        except requests.RequestException:
            continue
        fetched += 1
        if r.status_code != 200 or "text/html" not in r.headers.get("Content-Type", ""):
            continue
        soup = BeautifulSoup(r.text, "html.parser")
        chars += len(soup.get_text(" "))
        pages += 1
        for a in soup.find_all("a", href=True):
            link = urldefrag(urljoin(r.url, a["href"]))[0]
            if urlsplit(link).netloc == host and link.startswith(prefix) and link not in seen:
                seen.add(link)
                queue.append(link)
        soup.decompose()
    seconds = time.perf_counter() - t0
    return {"pages": pages, "fetched": fetched, "seconds": seconds, "text_chars": chars}


def run_kbsearch(start: str, index: str, dry_run: bool) -> dict:
    from kbsearch import KnowledgeBase, Settings

    settings = Settings.load(config_file=None, env={})
    kb = KnowledgeBase.open(index, settings=settings)
    wall0 = time.time()
    t0 = time.perf_counter()
    report = kb.crawl([start], name="pydocs", dry_run=dry_run)
    seconds = time.perf_counter() - t0
    kb.close()
    steps = {name: step.get("seconds") for name, step in report.after_build.items() if isinstance(step, dict)}
    return {"pages": report.pages_parsed, "fetched": report.fetched, "seconds": seconds,
            "sections": report.sections, "added": report.added, "unchanged": report.unchanged,
            "not_modified": report.not_modified, "same_hash": report.same_hash, "failed": report.failed,
            "skipped": report.skipped, "skip_reasons": report.skip_reasons, "complete": report.complete,
            # The split (seconds): the crawl proper (fetch + parse + index writes, overlapped; the
            # writer thread's busy time alongside), then the TF-IDF refit, then the after-build steps.
            "crawl_seconds": report.seconds, "write_seconds": report.write_seconds,
            "refit_seconds": report.refit_seconds, "after_build_seconds": report.after_build_seconds,
            "after_build_steps": steps,
            # Wall-clock phase boundaries, to split the memory samples taken by the parent.
            "phases": {"start": wall0, "crawl_end": wall0 + report.seconds,
                       "refit_end": wall0 + report.seconds + report.refit_seconds, "end": wall0 + seconds}}


def run_calibrate(index: str) -> dict:
    """The deflection calibration a crawl leaves to the next rebuild / reindex, timed on its own."""
    from kbsearch import KnowledgeBase, Settings

    kb = KnowledgeBase.open(index, settings=Settings.load(config_file=None, env={}))
    t0 = time.perf_counter()
    with kb._using() as generation:
        step = kb._fit_deflection(generation)
    seconds = time.perf_counter() - t0
    kb.close()
    return {"pages": step.get("documents", 0), "fetched": step.get("documents", 0), "seconds": seconds,
            "step": step}


def run_faq_check(start: str, index: str, site: Path) -> dict:
    """Search each FAQ question heading verbatim; is its own section the first hit?"""
    from kbsearch import KnowledgeBase, Settings
    from kbsearch.sources.crawl.extract import _anchor_of, _heading_text, _parse

    kb = KnowledgeBase.open(index, settings=Settings.load(config_file=None, env={}), create=False)
    questions = []
    for path in sorted((site / "faq").glob("*.html")):
        root = _parse(path.read_bytes().decode("utf-8", "replace"))
        main = next(iter(root.xpath("//*[@role='main']")), root)
        for el in main.iter("h2", "h3", "h4"):
            text = _heading_text(el)
            anchor = _anchor_of(el)
            if text.endswith("?") and anchor:
                questions.append((text, f"{start}faq/{path.name}#{anchor}"))
        del root
    top1 = []
    misses = []
    latencies = []
    for text, url in questions:
        t0 = time.perf_counter()
        hits = kb.search(text, limit=5)
        latencies.append(time.perf_counter() - t0)
        ok = bool(hits) and hits[0].url == url
        top1.append(ok)
        if not ok:
            misses.append({"question": text, "expected": url, "got": hits[0].url if hits else None})
    kb.close()
    latencies.sort()
    return {"questions": len(questions), "top1": sum(top1), "misses": misses[:10],
            "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else 0.0}


# -- orchestration -----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(kind: str, site: Path, tmp: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if kind == "nginx" and not nginx:
        raise SystemExit("nginx not found: apt-get install nginx-light, or use --server python")
    if kind == "nginx" and nginx:
        conf = tmp / "nginx.conf"
        conf.write_text(f"""
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    access_log off;
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;
    uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    server {{ listen 127.0.0.1:{port}; root {site}; }}
}}
""")
        proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    else:
        proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                 "--directory", str(site)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"the {kind} server did not start: {proc.stderr.read() if proc.stderr else ''}")
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"the {kind} server did not start listening on 127.0.0.1:{port}")


def measured(args: list[str]) -> tuple[dict, float]:
    result, rss = _measured(args)
    print(f"  done: {args[1]}: {json.dumps(result)[:300]} peak RSS {rss:.0f} MB", flush=True, file=sys.stderr)
    return result, rss


def _measured(args: list[str]) -> tuple[dict, float]:
    """Run ``crawl_bench.py --run ...`` in a child; return its JSON and the tree's peak RSS in MB.

    Every 50 ms the whole process tree (the run, its forkserver and parse workers) is sampled: RSS
    and PSS summed over the processes, and each process's CPU time (user + system), summed at the
    end into ``cpu_seconds``.  When the run reports phase boundaries, ``phase_peaks`` gives the
    peak RSS / PSS of each phase (crawl, refit, after-build).
    """
    import psutil

    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    samples: list[tuple[float, int, int]] = []
    cpu: dict[int, float] = {}
    stop = threading.Event()

    def sample() -> None:
        try:
            parent = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            return
        while not stop.is_set():
            try:
                procs = [parent, *parent.children(recursive=True)]
                total = total_pss = 0
                for p in procs:
                    try:
                        info = p.memory_full_info()  # rss, and pss (shared pages split fairly)
                        total += info.rss
                        total_pss += getattr(info, "pss", info.rss)
                        times = p.cpu_times()
                        cpu[p.pid] = times.user + times.system
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        pass
                samples.append((time.time(), total, total_pss))
            except psutil.NoSuchProcess:
                return
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"run {args} failed with exit status {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_pss_mb"] = max((s[2] for s in samples), default=0) / 1e6
    result["cpu_seconds"] = sum(cpu.values())
    phases = result.get("phases")
    if phases:
        bounds = [("crawl", phases["start"], phases["crawl_end"]),
                  ("refit", phases["crawl_end"], phases["refit_end"]),
                  ("after_build", phases["refit_end"], phases["end"])]
        result["phase_peaks"] = {
            name: [max((s[1] for s in samples if lo <= s[0] <= hi), default=0) / 1e6,
                   max((s[2] for s in samples if lo <= s[0] <= hi), default=0) / 1e6]
            for name, lo, hi in bounds}
    return result, max((s[1] for s in samples), default=0) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--site", type=Path, default=DEFAULT_SITE, help="HTML tree to serve [%(default)s]")
    parser.add_argument("--server", choices=["nginx", "python"], default="nginx")
    parser.add_argument("--skip-baseline", action="store_true", help="Only run kbsearch (for quick checks).")
    parser.add_argument("--no-index", action="store_true",
                        help="Skip the runs that write an index (and so the recrawl and FAQ check).")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--index", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.run == "baseline":
        print(json.dumps(run_baseline(args.url)))
        return
    if args.run in ("dry", "index"):
        print(json.dumps(run_kbsearch(args.url, args.index, dry_run=args.run == "dry")))
        return
    if args.run == "faq":
        print(json.dumps(run_faq_check(args.url, args.index, args.site)))
        return
    if args.run == "calibrate":
        print(json.dumps(run_calibrate(args.index)))
        return

    if not (args.site / "index.html").is_file():
        raise SystemExit(f"{args.site} has no index.html: apt-get install python3.11-doc (or pass --site)")
    with tempfile.TemporaryDirectory(prefix="crawl-bench-") as tmpdir:
        tmp = Path(tmpdir)
        server, port = start_server(args.server, args.site, tmp)
        start = f"http://127.0.0.1:{port}/"
        try:
            print(f"site: {args.site} served by {args.server} at {start}; {os.cpu_count()} cores", flush=True)
            rows = []
            if not args.skip_baseline:
                base, base_rss = measured(["--run", "baseline", "--url", start])
                rows.append(("baseline (1 thread, requests + bs4 html.parser)", base, base_rss))
            dry, dry_rss = measured(["--run", "dry", "--url", start, "--index", str(tmp / "dry")])
            rows.append(("kbsearch crawl, extraction only (dry run)", dry, dry_rss))
            full = again = faq = cal = None
            if not args.no_index:
                full, full_rss = measured(["--run", "index", "--url", start, "--index", str(tmp / "kb")])
                rows.append(("kbsearch crawl into a new Whoosh index", full, full_rss))
                again, again_rss = measured(["--run", "index", "--url", start, "--index", str(tmp / "kb")])
                rows.append(("kbsearch recrawl, site unchanged", again, again_rss))
                cal, cal_rss = measured(["--run", "calibrate", "--index", str(tmp / "kb")])
                rows.append(("then: deflection calibration (nightly reindex)", cal, cal_rss))
                faq, _ = measured(["--run", "faq", "--url", start, "--index", str(tmp / "kb"),
                                   "--site", str(args.site)])
        finally:
            server.terminate()
            server.wait(10)

    print(f"\n{'run':<50} {'pages':>6} {'secs':>7} {'pages/s':>8} {'CPU s':>7} {'peak RSS':>9} {'peak PSS':>9}")
    for label, data, rss in rows:
        rate = data["fetched"] / data["seconds"] if "recrawl" in label else data["pages"] / data["seconds"]
        print(f"{label:<50} {data['pages'] if 'recrawl' not in label else data['fetched']:>6} "
              f"{data['seconds']:>7.1f} {rate:>8.1f} {data['cpu_seconds']:>7.1f} {rss:>6.0f} MB "
              f"{data['peak_pss_mb']:>6.0f} MB")
    print("(secs: wall clock of the whole run; CPU s: user + system over the process tree; peak RSS: sum "
          "over the process tree, shared pages counted in every process; PSS: shared pages split between "
          "the processes sharing them)")
    if full:
        steps = ", ".join(f"{k} {v:.1f}s" for k, v in full["after_build_steps"].items() if v is not None)
        print(f"\ninto the index, split: crawl (fetch + parse + index writes, overlapped) {full['crawl_seconds']:.1f}s "
              f"(writer thread busy {full['write_seconds']:.1f}s), TF-IDF refit {full['refit_seconds']:.1f}s, "
              f"after-build steps {full['after_build_seconds']:.1f}s ({steps})")
        peaks = full.get("phase_peaks", {})
        print("peak RSS / PSS of the tree by phase: " + ", ".join(
            f"{name} {rss_mb:.0f} / {pss_mb:.0f} MB" for name, (rss_mb, pss_mb) in peaks.items()))
    if not args.skip_baseline:
        base_rate = base["pages"] / base["seconds"]
        print(f"\nspeed-up vs baseline: extraction {dry['pages'] / dry['seconds'] / base_rate:.2f}x"
              + (f", into the index {full['pages'] / full['seconds'] / base_rate:.2f}x end to end" if full else ""))
        if full:
            no_steps = full["seconds"] - full["after_build_seconds"]
            print(f"  into the index without the after-build steps (crawl + refit, {no_steps:.1f}s): "
                  f"{full['pages'] / no_steps / base_rate:.2f}x")
    if not args.skip_baseline and full and cal:
        base_rate = base["pages"] / base["seconds"]
        print(f"  into the index and then calibrated for deflection ({full['seconds'] + cal['seconds']:.1f}s): "
              f"{full['pages'] / (full['seconds'] + cal['seconds']) / base_rate:.2f}x")
    if full and again and faq:
        print(f"crawl: {full['pages']} pages -> {full['sections']} sections, {full['skipped']} skipped "
              f"{full['skip_reasons']}, {full['failed']} failed")
        print(f"recrawl: parsed {again['pages']}, 304 {again['not_modified']}, same hash {again['same_hash']}, "
              f"documents added {again['added']}")
        print(f"FAQ check: {faq['top1']}/{faq['questions']} question headings find their own section first "
              f"(search p50 {faq['p50_ms']:.0f} ms)")
        for miss in faq["misses"]:
            print(f"  miss: {miss['question']!r} -> {miss['got']} (expected {miss['expected']})")


if __name__ == "__main__":
    main()
