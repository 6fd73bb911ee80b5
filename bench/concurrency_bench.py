"""Many users at once: browser sessions signed in together, clicking through pages, against `streamlit run`.

    python bench/concurrency_bench.py --url sqlite:////path/crm100k.sqlite [--sessions 20] [--rounds 2]
        [--pages "Executive overview,Segments,Lifecycle,Churn"] [--think 5]

Starts the app the way `make run` does (no file watcher), signs in one browser context first and
times each page alone (the single-user time), then signs in `--sessions` contexts of one headless
Chromium (Debian's /usr/bin/chromium; none is downloaded), one after another, and has them all click
through the pages at the same time, `--rounds` times. A page's single-user time, in the browser and
on the server, is the median of `--alone-passes` visits alone (after one pass that fills the caches). A page's time is from the click in the sidebar until its title
shows and Streamlit's status widget ("Running…") is gone. Prints per page the single-user time,
p50 and p95 under load and p95 over single-user, and the server's peak resident memory (its process
and children, sampled every 0.2 s).

`--think S` has each session pause between clicks, for a random time of mean S seconds (exponential,
seeded per session), as people reading a page do; without it every session clicks again as soon as a
page has shown, the worst case. The browsers run on the same cores as the server, so their own
rendering (the charts above all) is part of every figure.

`--page-cpu` also counts, in the single-user pass, the CPU seconds every Chromium process spends on
each visit (leaving the last page and drawing this one, until 1.5 s after it has shown) and prints
them per page: what one person's click costs the browser.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.page_bench import BENCH_PASSWORD, BENCH_USER, ensure_admin  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
DEFAULT_PAGES = ("Executive overview", "Segments", "Lifecycle", "Customer value", "Churn", "Health", "Customers",
                 "Loyalty", "Communications")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db_url: str, run_times: Path | None = None, niceness: int = 0) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "CRM_DATABASE_URL": db_url, "STREAMLIT_SERVER_HEADLESS": "true"}
    if run_times is not None:
        env["CRM_RUN_TIMES"] = str(run_times)  # the server's own time for each script run (ui/run_times.py)
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.fileWatcherType", "none", "--server.runOnSave", "false"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=(lambda: os.nice(niceness)) if niceness else None)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise TimeoutError("streamlit did not become healthy")


def rss_megabytes(pid: int) -> float:
    """Resident memory of a process and its children, from /proc."""
    total = 0
    pids = [pid]
    try:
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process and its waited-for children have used, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:15]) / CLOCK_TICKS  # utime, stime, cutime, cstime


def server_cpu(pid: int) -> float:
    return _cpu_of(pid)


def browser_cpu() -> float:
    """CPU seconds used so far by the Chromium processes this bench started (its descendants): other
    Chromiums on the machine, such as another bench's or a test run's, are not counted."""
    parents: dict[int, int] = {}
    chromium: set[int] = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            comm, rest = stat.read_text().split("(", 1)[1].rsplit(")", 1)
        except (OSError, IndexError, ValueError):
            continue
        pid = int(stat.parent.name)
        parents[pid] = int(rest.split()[1])
        if "chrom" in comm:
            chromium.add(pid)
    mine, total = os.getpid(), 0.0
    for pid in chromium:
        ancestor, hops = parents.get(pid), 0
        while ancestor and ancestor != mine and hops < 20:
            ancestor, hops = parents.get(ancestor), hops + 1
        if ancestor == mine:
            total += _cpu_of(pid)
    return total


def autogroup(pid: int | str) -> str:
    """The scheduler autogroup of a process ("/autogroup-85"), or "" where there are none."""
    try:
        return Path(f"/proc/{pid}/autogroup").read_text().split()[0]
    except (OSError, IndexError):
        return ""


class Renicer(threading.Thread):
    """Keeps every Chromium thread at a niceness: Chromium (as root) sets its own processes' priorities,
    foreground renderers at 0 and its display threads below, so the niceness the bench starts it with
    does not hold. Chromium's processes also start sessions of their own, and with Linux's scheduler
    autogroups (kernel.sched_autogroup_enabled) a thread's niceness counts only against threads of
    its own session: each browser session would still get as much of the cores as the whole server.
    So the autogroup of each Chromium session (never the server's or the bench's) gets the niceness too."""

    def __init__(self, niceness: int, spared: set[str]):
        super().__init__(daemon=True)
        self.niceness, self.spared, self.stop = niceness, spared, threading.Event()
        self.reniced: set[str] = set()

    def run(self) -> None:
        while not self.stop.is_set():
            for task in Path("/proc").glob("[0-9]*/task/[0-9]*"):
                try:
                    if "chrom" in (task / "comm").read_text() or "chrom" in (task.parent.parent / "comm").read_text():
                        os.setpriority(os.PRIO_PROCESS, int(task.name), self.niceness)
                        group = autogroup(task.parent.parent.name)
                        if group and group not in self.spared | self.reniced:
                            (task.parent.parent / "autogroup").write_text(str(self.niceness))
                            self.reniced.add(group)
                except (OSError, ValueError):
                    continue
            self.stop.wait(0.5)


class MemorySampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_megabytes(self.pid))
            time.sleep(0.2)


async def sign_in(context, url: str):
    page = await context.new_page()
    page.set_default_timeout(300_000)
    await page.goto(url, wait_until="networkidle")
    await page.get_by_label("Username").fill(BENCH_USER)
    await page.get_by_label("Password", exact=True).fill(BENCH_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", name="Executive overview").wait_for()
    await idle(page)
    return page


async def idle(page) -> None:
    await page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=300_000)


async def visit(page, title: str) -> float:
    started = time.perf_counter()
    await page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
    await page.get_by_role("heading", name=title, exact=True).wait_for()
    await idle(page)
    return time.perf_counter() - started


PAGE_CPU_SETTLE = 1.5  # seconds after a page has shown that its browser CPU is still counted (charts draw after)


async def measure(url: str, sessions: int, rounds: int, pages: list[str], think: float = 0.0,
                  server_pid: int | None = None, together_start: bool = False,
                  page_cpu: bool = False, alone_passes: int = 3) -> tuple[dict, dict, dict]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        alone_context = await browser.new_context(viewport={"width": 1440, "height": 1000})
        alone_page = await sign_in(alone_context, url)
        single: dict[str, list[float]] = {title: [] for title in pages}
        single_cpu: dict[str, float] = {}
        windows: dict[str, tuple[float, float]] = {}
        for attempt in range(1 + alone_passes):  # the first pass fills the server's caches, as a first visitor would
            if attempt == 1:
                alone_started = time.time()
            for title in pages:
                before = browser_cpu()
                seconds = await visit(alone_page, title)
                if attempt:
                    single[title].append(seconds)
                if page_cpu and attempt == 1:  # what the browsers spend on one visit: leaving the last page, drawing this
                    await asyncio.sleep(PAGE_CPU_SETTLE)
                    single_cpu[title] = browser_cpu() - before
        await asyncio.sleep(1)  # the last run's time is written once the page has been sent
        windows["alone"] = (alone_started, time.time())
        await alone_context.close()
        print("alone: " + ", ".join(f"{t} {statistics.median(v):.2f} s" for t, v in single.items()), flush=True)
        contexts = [await browser.new_context(viewport={"width": 1440, "height": 1000}) for _ in range(sessions)]
        signed = []
        for context in contexts:  # signed in one after another; then they all click at the same time
            signed.append(await sign_in(context, url))
        print(f"{len(signed)} sessions signed in", flush=True)
        together: dict[str, list[float]] = {title: [] for title in pages}

        async def walk(index: int, page) -> None:
            order = pages[index % len(pages):] + pages[:index % len(pages)]  # not all on the same page at once
            pause = random.Random(index)
            if think > 0 and not together_start:  # people do not all click at the same instant
                await asyncio.sleep(pause.expovariate(1 / think))
            for _ in range(rounds):
                for title in order:
                    together[title].append(await visit(page, title))
                    if think > 0:
                        await asyncio.sleep(pause.expovariate(1 / think))

        started = (time.perf_counter(), server_cpu(server_pid) if server_pid else 0.0, browser_cpu())
        together_started = time.time()
        await asyncio.gather(*[walk(i, page) for i, page in enumerate(signed)])
        await asyncio.sleep(1)
        windows["together"] = (together_started, time.time())
        used = {"seconds": time.perf_counter() - started[0],
                "server": (server_cpu(server_pid) if server_pid else 0.0) - started[1],
                "browsers": browser_cpu() - started[2], "clicks": sum(len(v) for v in together.values()),
                "windows": windows, "single_cpu": single_cpu}
        await browser.close()
    return {t: statistics.median(v) for t, v in single.items()}, together, used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="a refreshed database")
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pages", default=",".join(DEFAULT_PAGES))
    parser.add_argument("--think", type=float, default=0.0, help="mean seconds a session waits between clicks")
    parser.add_argument("--together-start", action="store_true",
                        help="with --think, every session still makes its first click at the same instant (a burst); "
                             "by default each first waits a think time, as people arriving at their own pace")
    parser.add_argument("--page-cpu", action="store_true",
                        help="in the single-user pass, also count the browser CPU seconds of each visit (from the click "
                             f"until {PAGE_CPU_SETTLE:g} s after the page has shown, as charts still draw) and print them")
    parser.add_argument("--alone-passes", type=int, default=3,
                        help="times one session clicks through the pages alone, after a first pass that fills the "
                             "caches; the single-user time of a page is the median of these")
    parser.add_argument("--slowest", type=int, default=15,
                        help="print this many of the slowest server runs under load, with their CPU, SQL and waiting")
    parser.add_argument("--server-nice", type=int, default=0,
                        help="start the server at this niceness (negative needs root): with --browsers-nice, "
                             "the server gets the cores first, as on a machine of its own")
    parser.add_argument("--browsers-nice", type=int, default=0,
                        help="run the browsers at this niceness (the server keeps its own): people's browsers run "
                             "on their own machines, here they share the server's cores")
    args = parser.parse_args()
    pages = [p.strip() for p in args.pages.split(",") if p.strip()]
    ensure_admin(args.url)
    run_times = Path(tempfile.mkdtemp(prefix="crm-run-times-")) / "runs.tsv"
    process, url = start_server(args.url, run_times, args.server_nice)
    sampler = MemorySampler(process.pid)
    sampler.start()
    renicer = Renicer(args.browsers_nice, {autogroup(os.getpid()), autogroup(process.pid)} - {""})
    if args.browsers_nice:
        os.nice(args.browsers_nice)  # this process and the browsers it starts; the server started before
        renicer.start()
    try:
        single, together, used = asyncio.run(measure(url, args.sessions, args.rounds, pages, args.think, process.pid,
                                                    args.together_start, args.page_cpu, args.alone_passes))
    finally:
        renicer.stop.set()
        sampler.stop.set()
        process.terminate()
        process.wait(timeout=30)
    pace = f"a mean {args.think:g} s between clicks" if args.think > 0 else "no pause between clicks"
    print(f"{args.sessions} sessions x {args.rounds} rounds, {pace}; server peak RSS {sampler.peak:,.0f} MB")
    clicks = max(used["clicks"], 1)
    print(f"while they clicked ({used['seconds']:.0f} s, {used['clicks']} clicks, server at nice {args.server_nice}, "
          f"browsers at nice {args.browsers_nice}): "
          f"server CPU {used['server']:.1f} s ({used['server'] / clicks:.3f} s a click, "
          f"{used['server'] / used['seconds']:.2f} cores), browsers CPU {used['browsers']:.1f} s "
          f"({used['browsers'] / clicks:.3f} s a click, {used['browsers'] / used['seconds']:.2f} cores)")
    server = server_runs(run_times, used["windows"])
    print("In the browser (click to page shown, the browser's rendering included) and on the server (the page's "
          "script run, from ui/run_times.py), seconds:")
    print(f"{'page':<22} {'alone':>7} {'p50':>7} {'p95':>7} {'p95/alone':>9} | {'server alone':>12} {'p50':>7} "
          f"{'p95':>7} {'p95/alone':>9} {'CPU p50':>9}")
    for title in pages:
        p50, p95 = percentiles(together[title])
        alone_runs = server["alone"].get(title, [])
        s_alone = statistics.median(alone_runs) if alone_runs else float("nan")
        s50, s95 = percentiles(server["together"].get(title, []))
        cpu50, _ = percentiles(server["together cpu"].get(title, []))
        print(f"{title:<22} {single[title]:>7.2f} {p50:>7.2f} {p95:>7.2f} {p95 / single[title]:>9.1f} | "
              f"{s_alone:>12.3f} {s50:>7.3f} {s95:>7.3f} {s95 / s_alone:>9.1f} {cpu50:>9.3f}")
    print_slowest(server, args.slowest)
    if used["single_cpu"]:
        print("Browser CPU seconds of one visit alone (every Chromium process, from the click until "
              f"{PAGE_CPU_SETTLE:g} s after the page showed):")
        for title in pages:
            print(f"{title:<22} {used['single_cpu'][title]:>7.2f}")
        print(f"{'mean':<22} {statistics.mean(used['single_cpu'].values()):>7.2f}")


def percentiles(values: list[float]) -> tuple[float, float]:
    """p50 and p95 (nearest rank); NaN for no values."""
    if not values:
        return float("nan"), float("nan")
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def server_runs(path: Path, windows: dict[str, tuple[float, float]]) -> dict[str, dict[str, list[float]]]:
    """The server's script-run seconds per page within each time window, from the CRM_RUN_TIMES log."""
    runs: dict[str, dict[str, list]] = {name + suffix: {} for name in windows for suffix in ("", " cpu", " runs", " gc")}
    if not path.exists():
        return runs
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("gc\t"):
            _, at, seconds, _collected = line.split("\t")
            for name, (start, end) in windows.items():
                if start <= float(at) <= end:
                    runs[name + " gc"].setdefault("gc", []).append((float(at), float(seconds)))
            continue
        at, seconds, cpu, sql, statements, computed, queued, title = line.split("\t", 7)
        for name, (start, end) in windows.items():
            if start <= float(at) <= end:
                runs[name].setdefault(title, []).append(float(seconds))
                runs[name + " cpu"].setdefault(title, []).append(float(cpu))
                runs[name + " runs"].setdefault(title, []).append(
                    (float(at), float(seconds), float(cpu), float(sql), int(statements), float(computed),
                     float(queued)))
    return runs


def print_slowest(server: dict[str, dict[str, list]], count: int) -> None:
    """The slowest script runs under load: the thread's own CPU (SQLite's work included), the SQL it
    sent, the figures it computed because they were not cached, its time off the CPU, and how much
    of that it was ready to run but queued for a core; the rest of the time off the CPU it waited for
    the interpreter lock, PostgreSQL, or another session computing the figures it needs."""
    runs = sorted(((seconds, title, at, cpu, sql, statements, computed, queued)
                   for title, page_runs in server.get("together runs", {}).items()
                   for at, seconds, cpu, sql, statements, computed, queued in page_runs), reverse=True)[:count]
    if not runs:
        return
    first = min(at for page_runs in server["together runs"].values() for at, *_ in page_runs)
    collections = server.get("together gc", {}).get("gc", [])
    if collections:
        print(f"Full garbage collections in the server while they clicked: {len(collections)}, "
              f"{sum(s for _, s in collections):.2f} s in all, the longest {max(s for _, s in collections):.3f} s, at "
              + ", ".join(f"{at - first:.1f}" for at, _ in collections[:20]))
    print(f"The {len(runs)} slowest server runs under load (at: seconds since the first), seconds:")
    print(f"{'page':<22} {'at':>6} {'run':>7} {'CPU':>7} {'SQL':>7} {'stmts':>6} {'computing':>9} {'off CPU':>7} "
          f"{'queued':>7}")
    for seconds, title, at, cpu, sql, statements, computed, queued in runs:
        print(f"{title:<22} {at - first:>6.1f} {seconds:>7.3f} {cpu:>7.3f} {sql:>7.3f} {statements:>6} "
              f"{computed:>9.3f} {max(seconds - cpu, 0):>7.3f} {queued:>7.3f}")


if __name__ == "__main__":
    main()
