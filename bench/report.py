"""bench/RESULTS.md from one run's results (bench/out/results.json).

The hand-written analysis between `<!-- notes -->` and `<!-- /notes -->` in an
existing report is kept when the report is written again.

    .venv/bin/python bench/report.py bench/out/results.json bench/RESULTS.md
"""
from __future__ import annotations

import json
import pathlib
import re
import sys

import pyspy

NOTES = re.compile(r"<!-- notes -->.*?<!-- /notes -->", re.S)
DEFAULT_NOTES = ("<!-- notes -->\n_(Hand-written analysis goes here; `bench/run.py` keeps this block when it "
                 "rewrites the file.)_\n<!-- /notes -->")


def _num(value, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and value.is_integer() and digits == 0:
        value = int(value)
    if isinstance(value, (int, float)) and abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _ratio(ours, raw) -> float | None:
    if ours is None or raw in (None, 0):
        return None
    return ours / raw


def _x(ratio: float | None) -> str:
    return "–" if ratio is None else f"{ratio:.2f}×"


SEARCH_KINDS = {"rare": "one message", "name": "one contact's name", "common": "in every message"}


def _verdict(ok: bool | None, miss: str = "") -> str:
    if ok is None:
        return "not measured"
    return "**yes**" if ok else f"**no**{': ' + miss if miss else ''}"


def _cpu(f: dict | None) -> float | None:
    return f["burst"]["server_cpu_us_per_delivery"] if f else None


def targets_15(results: dict) -> list[str]:
    """Issue 15's targets: ratios to graphql-yoga and to raw, measured in this run."""
    rows = ["| target | measured | met? |", "| --- | --- | --- |"]
    fanout = results.get("fanout", {})
    for n in sorted({f["subscribers"] for f in fanout.values()}):
        raw, yoga, ours = (fanout.get(f"{k}-{n}") for k in ("raw", "yoga", "inbox"))
        if not ours:
            continue
        if yoga:
            limit = 1.0 if n < 100 else 0.5
            r = _ratio(_cpu(ours), _cpu(yoga))
            rows.append(f"| server CPU per delivery, N = {n:,}: ≤ {limit:g}× yoga | {_num(_cpu(ours))} µs vs yoga "
                        f"{_num(_cpu(yoga))} µs = {_x(r)} | {_verdict(r <= limit, f'{r / limit:.2f}× the limit')} |")
            if n >= 100:
                r = _ratio(ours["burst"]["deliveries_per_s"], yoga["burst"]["deliveries_per_s"])
                rows.append(f"| burst deliveries/s, N = {n:,}: ≥ 1.5× yoga | {_num(ours['burst']['deliveries_per_s'])}/s "
                            f"vs yoga {_num(yoga['burst']['deliveries_per_s'])}/s = {_x(r)} | "
                            f"{_verdict(r >= 1.5, f'needs {1.5 / r:.2f}× more')} |")
        if raw and n >= 1000:
            r = _ratio(_cpu(ours), _cpu(raw))
            rows.append(f"| server CPU per delivery, N = {n:,}: ≤ 1.3× raw | {_num(_cpu(ours))} µs vs raw "
                        f"{_num(_cpu(raw))} µs = {_x(r)} | {_verdict(r <= 1.3, f'{r / 1.3:.2f}× the limit')} |")
    big, small = fanout.get("inbox-10000"), fanout.get("inbox-1000")
    if big and small:
        for label, get in (("server CPU µs per delivery", _cpu), ("KB per idle subscription",
                                                                  lambda f: f["kb_per_idle_subscription"])):
            a, b = get(small), get(big)
            r = _ratio(b, a)
            rows.append(f"| {label}, N = 10,000 as at N = 1,000 (≤ 1.2×) | {_num(b)} vs {_num(a)} = {_x(r)} | "
                        f"{_verdict(r is not None and r <= 1.2, f'{r:.2f}×' if r else '')} |")
    yoga_http = results.get("http_yoga", {}).get("hello")
    for backend, http in results.get("http", {}).items():
        if yoga_http:
            r = _ratio(http["me"]["rps"], yoga_http["rps"])
            rows.append(f"| HTTP `{{ me {{ id }} }}` ({backend}): ≥ 2× yoga's `{{ hello }}` req/s | "
                        f"{_num(http['me']['rps'])} vs yoga {_num(yoga_http['rps'])} req/s = {_x(r)} | "
                        f"{_verdict(r >= 2, f'needs {2 / r:.2f}× more')} |")
        p95 = http["page"]["p95_ms"]
        rows.append(f"| inbox page, {http['conversations']:,} conversations ({backend}): p95 ≤ 10 ms | p95 {p95} ms | "
                    f"{_verdict(p95 <= 10, f'{p95 / 10:.1f}× over')} |")
        for name, figures in http.get("search", {}).items():
            p95 = figures["p95_ms"]
            rows.append(f"| search page \"{figures['term']}\" ({SEARCH_KINDS[name]}), {http['conversations']:,} "
                        f"conversations ({backend}): p95 ≤ 20 ms | p95 {p95} ms | "
                        f"{_verdict(p95 <= 20, f'{p95 / 20:.1f}× over')} |")
    probe = next((f["inbound_only"] for f in fanout.values() if "inbound_only" in f), None)
    if probe:
        us = probe["server_cpu_us_per_message"]
        rows.append(f"| inbound message (`receiveChannelMessage`): ≤ 400 µs server CPU | {_num(us)} µs | "
                    f"{_verdict(us <= 400, f'{us / 400:.1f}× the limit')} |")
    for key, senders in (("ingest_known", "known senders"), ("ingest", "new senders too")):
        ingest = results.get(key)
        if not ingest:
            continue
        if key == "ingest":  # the warm-up's 50 senders are known; each other one's first message is new
            senders = f"{senders}: {ingest['conversations'] - 50:,} of {ingest['webhooks']:,} from a new sender"
        us = ingest["server_cpu_us_per_webhook"]
        rows.append(f"| inbound message (Messenger webhook, {senders}): ≤ 400 µs server CPU | {_num(us)} µs | "
                    f"{_verdict(us <= 400, f'{us / 400:.1f}× the limit')} |")
        rate = ingest["per_second"]
        rows.append(f"| webhook ingestion ({senders}): ≥ 3,000/s per process | {_num(rate)}/s | "
                    f"{_verdict(rate >= 3000, f'needs {3000 / rate:.1f}× more')} |")
    for name in sorted(fanout, key=lambda k: fanout[k]["subscribers"]):
        f = fanout[name]
        if name.startswith("inbox-") and f["subscribers"] >= 1000:
            b = f["burst"]
            pct = b["rss_growth_pct"]
            rows.append(f"| RSS flat over a burst of {b['received']:,} deliveries (N = {f['subscribers']:,}): < 5 % | "
                        f"{b['rss_before_kb'] / 1024:.1f} → {b['rss_after_kb'] / 1024:.1f} MB = {pct} % "
                        f"| {_verdict(pct < 5, f'{pct} %')} |")
    return rows


def targets(results: dict) -> list[str]:
    rows = ["| target | measured | met? |", "| --- | --- | --- |"]
    fanout = results.get("fanout", {})
    raw, ours = fanout.get("raw-1000"), fanout.get("inbox-1000")
    if raw and ours:
        r = _ratio(ours["burst"]["server_cpu_us_per_delivery"], raw["burst"]["server_cpu_us_per_delivery"])
        rows.append(f"| fan-out server CPU per delivery, N = 1,000: ≤ 2.0× raw | "
                    f"{_num(ours['burst']['server_cpu_us_per_delivery'])} µs vs raw "
                    f"{_num(raw['burst']['server_cpu_us_per_delivery'])} µs = {_x(r)} | "
                    f"{_verdict(r <= 2.0, f'{r / 2.0:.1f}× over the limit')} |")
        r = _ratio(ours["burst"]["deliveries_per_s"], raw["burst"]["deliveries_per_s"])
        rows.append(f"| burst deliveries/s, N = 1,000: ≥ 0.6× raw | {_num(ours['burst']['deliveries_per_s'])}/s vs "
                    f"raw {_num(raw['burst']['deliveries_per_s'])}/s = {_x(r)} | "
                    f"{_verdict(r >= 0.6, f'needs {0.6 / r:.1f}× more')} |")
        r = _ratio(ours["steady"]["p99_ms"], raw["steady"]["p99_ms"])
        rows.append(f"| steady-rate p99 latency, N = 1,000, {results['config']['rate']:g} messages/s: ≤ 1.5× raw | "
                    f"{_num(ours['steady']['p99_ms'])} ms vs raw {_num(raw['steady']['p99_ms'])} ms = {_x(r)} | "
                    f"{_verdict(r <= 1.5, f'{r / 1.5:.1f}× over the limit')} |")
        r = _ratio(ours["kb_per_idle_subscription"], raw["kb_per_idle_subscription"])
        rows.append(f"| KB per idle subscription (N = 1,000): ≤ 1.2× raw | {_num(ours['kb_per_idle_subscription'])} KB "
                    f"vs raw {_num(raw['kb_per_idle_subscription'])} KB = {_x(r)} | "
                    f"{_verdict(r <= 1.2, f'{r / 1.2:.1f}× over the limit')} |")
    growth = fanout.get("inbox-100")
    if growth:
        b = growth["burst"]
        pct = b["rss_growth_pct"]
        rows.append(f"| RSS growth over {b['received']:,} deliveries after warm-up (N = 100): < 5 % | "
                    f"{b['rss_before_kb'] / 1024:.1f} → {b['rss_after_kb'] / 1024:.1f} MB = {pct} % | "
                    f"{_verdict(pct < 5, f'{pct} %')} |")
    http_raw = results.get("http_raw")
    for backend, http in results.get("http", {}).items():
        if http_raw:
            r = _ratio(http["me"]["rps"], http_raw["me"]["rps"])
            rows.append(f"| HTTP `{{ me {{ id }} }}` ({backend}): ≥ 0.2× raw req/s | {_num(http['me']['rps'])} vs raw "
                        f"{_num(http_raw['me']['rps'])} req/s = {_x(r)} | {_verdict(r >= 0.2, f'needs {0.2 / r:.1f}× more')} |")
        p95 = http["page"]["p95_ms"]
        rows.append(f"| inbox page, {http['conversations']:,} conversations ({backend}): p95 ≤ 10 ms | p95 {p95} ms "
                    f"(p50 {http['page']['p50_ms']} ms, 1 connection) | {_verdict(p95 <= 10, f'{p95 / 10:.1f}× over')} |")
        counts = {k.rsplit("_", 1)[1]: v["count"] for k, v in http["sql_queries"].items()
                  if k.startswith("page_first")}
        fixed = len(set(counts.values())) == 1
        described = ", ".join(f"first {size}: {count}" for size, count in counts.items())
        rows.append(f"| inbox page ({backend}): fixed SQL statement count | {described} | "
                    f"{_verdict(fixed, 'grows with the page')} |")
    losses = [(name, phase, f[phase]["missing"], f[phase]["duplicates"])
              for name, f in fanout.items() for phase in ("steady", "burst", "profiled_burst") if phase in f]
    if losses:
        missing = sum(l[2] for l in losses)
        duplicates = sum(l[3] for l in losses)
        rows.append(f"| loss and duplicates: 0 everywhere | {missing} lost, {duplicates} duplicated over "
                    f"{len(losses)} phases | {_verdict(missing == 0 and duplicates == 0)} |")
    return rows


def fanout_table(results: dict) -> list[str]:
    fanout = results.get("fanout", {})
    sizes = sorted({f["subscribers"] for f in fanout.values()})
    head = "| figure | " + " | ".join(f"raw N={n:,} | yoga N={n:,} | inbox N={n:,} | inbox/raw | inbox/yoga"
                                      for n in sizes) + " |"
    rows = [head, "| --- |" + " --- | --- | --- | --- | --- |" * len(sizes)]

    def row(label: str, get, digits: int = 1, ratio: bool = True) -> None:
        cells = []
        for n in sizes:
            raw, yoga, ours = (fanout.get(f"{k}-{n}") for k in ("raw", "yoga", "inbox"))
            a, y, b = (get(f) if f else None for f in (raw, yoga, ours))
            number = lambda v: isinstance(v, (int, float))  # noqa: E731
            cells += [_num(a, digits), _num(y, digits), _num(b, digits),
                      _x(_ratio(b, a)) if ratio and number(a) and number(b) else "",
                      _x(_ratio(b, y)) if ratio and number(y) and number(b) else ""]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")

    row("burst: messages", lambda f: f["burst"]["messages"], 0, False)
    row("burst: deliveries/s", lambda f: f["burst"]["deliveries_per_s"], 0)
    row("burst: server CPU µs per delivery", lambda f: f["burst"]["server_cpu_us_per_delivery"])
    row("burst: … of which kernel (system) µs", lambda f: f["burst"].get("server_system_cpu_us_per_delivery"))
    row("burst: server CPU busy (cores)", lambda f: f["burst"]["server_cpu_share"], 2)
    row("burst: client CPU µs per delivery", lambda f: round(f["burst"]["client_cpu_s"] / f["burst"]["received"] * 1e6, 1)
        if f["burst"]["received"] else None, 1, False)
    row("burst: latency p50 ms", lambda f: f["burst"]["p50_ms"])
    row("burst: latency p99 ms", lambda f: f["burst"]["p99_ms"])
    row("steady: messages/s", lambda f: f["steady"].get("rate", results["config"]["rate"]), 1, False)
    row("steady: messages", lambda f: f["steady"]["messages"], 0, False)
    row("steady: latency p50 ms", lambda f: f["steady"]["p50_ms"])
    row("steady: latency p95 ms", lambda f: f["steady"]["p95_ms"])
    row("steady: latency p99 ms", lambda f: f["steady"]["p99_ms"])
    row("steady: server CPU µs per delivery", lambda f: f["steady"]["server_cpu_us_per_delivery"])
    row("lost (steady + burst)", lambda f: f["steady"]["missing"] + f["burst"]["missing"], 0, False)
    row("duplicated (steady + burst)", lambda f: f["steady"]["duplicates"] + f["burst"]["duplicates"], 0, False)
    row("KB per idle subscription", lambda f: f["kb_per_idle_subscription"])
    row("RSS with subscribers, MB", lambda f: round(f["rss_with_subscribers_kb"] / 1024, 1))
    row("RSS before → after burst, MB", lambda f: f"{f['burst']['rss_before_kb'] / 1024:.1f} → "
        f"{f['burst']['rss_after_kb'] / 1024:.1f}", 1, False)
    row("RSS growth over the burst %", lambda f: f["burst"]["rss_growth_pct"], 1, False)
    row("other processes' CPU during the burst (cores)", lambda f: f["burst"].get("other_processes_cores"), 2, False)
    row("connect + subscribe all, s", lambda f: f["connect_seconds"], 1, False)
    out = rows
    probe = next((f["inbound_only"] for f in fanout.values() if "inbound_only" in f), None)
    if probe:
        out += ["", f"The inbound path alone (no subscriber, {probe['messages']} `receiveChannelMessage` with "
                    f"{results['config']['publishers']} concurrent publishers): **{probe['per_s']} messages/s, "
                    f"{probe['server_cpu_us_per_message'] / 1000:.1f} ms server CPU per message**. That cost is inside "
                    "every inbox delivery figure above (divided by N); the raw server's publish costs nearly nothing."]
    return out


def http_table(results: dict) -> list[str]:
    rows = ["| query | server | connections | req/s | p50 ms | p95 ms | p99 ms | server CPU µs/request "
            "| other processes (cores) |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

    def row(label: str, server: str, f: dict) -> None:
        rows.append(f"| {label} | {server} | {f['connections']} | {_num(f['rps'])} | {f['p50_ms']} | {f['p95_ms']} | "
                    f"{f['p99_ms']} | {_num(f['server_cpu_us_per_request'])} | {f.get('other_processes_cores', '–')} |")

    raw = results.get("http_raw")
    if raw:
        row("`{ me { id } }` (pre-serialised)", "raw: bare ASGI on uvicorn", raw["me"])
        if "starlette" in raw:
            row("`{ me { id } }` (pre-serialised)", "raw: a starlette route", raw["starlette"])
    if results.get("http_yoga"):
        row("`{ hello }`", "graphql-yoga (Node)", results["http_yoga"]["hello"])
    for backend, http in results.get("http", {}).items():
        row("`{ me { id } }`", f"inbox ({backend})", http["me"])
        row("inbox page (25, UNASSIGNED)", f"inbox ({backend})", http["page"])
        row("inbox page (25, UNASSIGNED)", f"inbox ({backend})", http["page_loaded"])
        row("inbox page + `totalCount`", f"inbox ({backend})", http["page_with_total"])
        for name, figures in http.get("search", {}).items():
            row(f"search page \"{figures['term']}\" ({SEARCH_KINDS[name]})", f"inbox ({backend})", figures)
    out = rows
    for backend, http in results.get("http", {}).items():
        q = http["sql_queries"]
        out += ["", f"**{backend}**: {http['conversations']:,} conversations seeded in {http['seed_seconds']} s "
                    f"({', '.join(f'{n:,} {t}' for t, n in http['seeded_rows'].items())}). SQL statements per request: "
                    + ", ".join(f"{k.replace('_', ' ')} **{v['count']}**" for k, v in q.items()) + ".",
                "", f"Statements of one inbox page (first 25), with the time from each to the next log record "
                    "(the statement and the Python work after it; a DEBUG-logging server, so slower than above):", "",
                "| # | statement | ms to next |", "| --- | --- | --- |"]
        out += [f"| {i + 1} | `{s['sql'].replace('|', '/')}` | {s['ms_to_next']} |"
                for i, s in enumerate(q["page_first_25"]["statements"])]
    return out


def hostile_table(hostile: dict) -> list[str]:
    """Each attack by one user beside another company's user (bench/hostile.py)."""
    phases = hostile["phases"]
    calm = phases.get("none", {})
    lines = [f"One user of one company attacks for {hostile['seconds_per_phase']} s per phase while a user of "
             "another company loads inbox pages (one connection) and holds a `messageAdded` subscription fed "
             "20 messages/s. Target: the victim's p99s ≤ 2× the calm phase's, server RSS ≤ 300 MB. "
             + (f"The server runs on CPU {hostile['cpus']['server']} and the clients on CPU "
                f"{hostile['cpus']['clients']} (the attacker in a process of its own, niced), as when they are "
                "other machines. " if hostile.get("cpus", {}).get("server") else ""), "",
             "| attack | victim page p50 / p99 | victim delivery p50 / p99 | victim failures | server RSS max | "
             "server CPU | met? | what the attacker got |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, f in phases.items():
        ok = None
        if name != "none" and calm.get("page_p99_ms"):
            # No page or delivery at all during an attack is a miss, not a gap in the data.
            ok = (f.get("page_p99_ms") is not None and f.get("delivery_p99_ms") is not None
                  and f["page_p99_ms"] <= 2 * calm["page_p99_ms"] and f["delivery_p99_ms"] <= 2 * calm["delivery_p99_ms"]
                  and f["rss_max_mb"] <= 300)
        failures = f.get("failed_pages", 0) + f.get("failed_messages", 0) + f.get("undelivered", 0)
        got = ", ".join(f"{k}: {v}" for k, v in f.get("attacker", {}).items()) or "–"
        lines.append(f"| {name} | {_num(f.get('page_p50_ms'))} / {_num(f.get('page_p99_ms'))} ms | "
                     f"{_num(f.get('delivery_p50_ms'))} / {_num(f.get('delivery_p99_ms'))} ms | {failures}"
                     f"{' (socket closed ' + ', '.join(f['victim_closed']) + ')' if f.get('victim_closed') else ''} | "
                     f"{_num(f.get('rss_max_mb'))} MB{' (server died)' if f.get('server') else ''} | "
                     f"{_num(f.get('server_cpu_cores'))} cores | {'–' if name == 'none' else _verdict(ok)} | {got} |")
    profiled = [(name, f["profile"]) for name, f in phases.items() if f.get("profile", {}).get("samples")]
    if profiled:
        lines += ["", "Where the server's CPU went in each phase (py-spy; bench/out/hostile/ holds the raw "
                  "profiles): the top categories and the heaviest functions by self time.", "",
                  "| phase | samples | categories | heaviest functions (self) |", "| --- | --- | --- | --- |"]
        for name, profile in profiled:
            categories = ", ".join(f"{c} {pct} %" for c, pct in profile["categories"][:3])
            heaviest = ", ".join(f"`{fn}` {pct} %" for fn, pct in profile["self"][:3])
            lines.append(f"| {name} | {profile['samples']} | {categories} | {heaviest} |")
    return lines


def write(results: dict, output: pathlib.Path) -> None:
    m = results["machine"]
    previous = output.read_text() if output.exists() else ""
    found = NOTES.search(previous)
    notes = found.group(0) if found else DEFAULT_NOTES
    lines = [
        "# Benchmark results", "",
        f"Written by `{results['command']}` (bench/README.md explains every figure). "
        f"Run took {results['seconds']} s.", "",
        f"- date: {m['date']}",
        f"- machine: {m['nproc']} cores, {m['cpu']}, {m['memory_gib']} GiB memory; Linux {m['kernel']}; Python {m['python']}",
        f"- code: commit {m['commit']}",
        f"- other processes' CPU when the run started: {m.get('other_processes_cores_at_start', '?')} cores "
        "(per-phase figures below; anything much above 0 makes that phase noisy)",
        f"- inbox servers: `inbox serve` on {results['database']} + {results['broadcast']}, one process; "
        f"clients: {results['config']['processes']} subscriber processes (lean graphql-transport-ws clients), "
        f"{results['config']['publishers']} concurrent publishers in bursts; HTTP load: {m['http_tool']}",
        f"- baseline: bench/baseline.py (starlette websocket endpoint sending one pre-serialised frame to every "
        f"socket; bare-ASGI HTTP answer), on uvicorn with the same settings, measured in this run",
        "- second baseline: bench/yoga/ (graphql-yoga + graphql-ws over `ws` on Node "
        f"{m.get('node', '?')}, its in-memory pub/sub, nothing persisted), measured in this run", "",
        "## Targets (issue 15)", "", *targets_15(results), "",
        "## Targets (issue 7)", "", *targets(results), "",
    ]
    if "fanout" in results:
        lines += ["## Subscription fan-out", "",
                  f"N subscribers of ONE conversation (`messageAdded(conversationId:) {{ id body cursor }}`), spread "
                  f"over {results['config']['users']} users sharing the channel; messages published through "
                  "`receiveChannelMessage` (inbox) or POST /publish (raw). Deliveries/s = deliveries ÷ (last receipt − "
                  "first publish); latency = receipt − publish (time.time() in the body, same machine); server CPU "
                  "from /proc/PID/stat.", "", *fanout_table(results), ""]
    if "http" in results or "http_raw" in results:
        lines += ["## HTTP", "", *http_table(results), ""]
    if "ingest" in results:
        i = results["ingest"]
        lines += ["## Webhook ingestion", ""]
        if "ingest_known" in results:
            k = results["ingest_known"]
            lines += [f"{k['webhooks']:,} signed Messenger webhooks from 50 senders the server knows (bench/ingest.py "
                      f"--contacts 50, 32 concurrent, {k['backend']}): **{k['per_second']} webhooks/s**, p50 "
                      f"{k['p50_ms']} ms, p99 {k['p99_ms']} ms, {k['server_cpu_us_per_webhook']:,} µs server CPU per "
                      f"webhook, {k['failures']} failures, {k['conversations']} conversations.", ""]
        lines += [f"{i['webhooks']:,} signed Messenger webhooks from 500 senders, {i['conversations'] - 50:,} of them new "
                  f"(bench/ingest.py, "
                  f"32 concurrent, {i['backend']}; a new sender's profile is fetched from the fake Graph API and its "
                  f"picture kept): **{i['per_second']} webhooks/s**, p50 {i['p50_ms']} ms, p99 {i['p99_ms']} ms, "
                  f"{i['server_cpu_us_per_webhook']:,} µs server CPU per webhook, {i['failures']} failures, "
                  f"{i['conversations']} conversations.", ""]
        if i.get("profile"):
            lines.append(pyspy.markdown(i["profile"], f"Webhook ingestion ({i['webhooks'] // 2:,} more webhooks "
                                                      "after the measured ones)"))
    if "hostile" in results:
        lines += ["## Hostile clients (issue 11)", "", *hostile_table(results["hostile"]), ""]
    elif "hostile_error" in results:
        lines += ["## Hostile clients (issue 11)", "", f"The hostile run failed: `{results['hostile_error']}` "
                  "(bench/out/logs/inbox-hostile.log).", ""]
    lines += ["## Where the time goes", "", notes, "", "### Profiles (py-spy, this run)", "",
              "Each sample is attributed to the innermost frame in a known category, so the categories add to "
              "100 %; raw profiles are in bench/out/ (`.venv/bin/python bench/pyspy.py FILE` re-summarises one).", ""]
    fanout = results.get("fanout", {})
    for name, f in fanout.items():
        if f.get("profile"):
            b = f["profiled_burst"]
            lines.append(pyspy.markdown(f["profile"], f"Fan-out burst, inbox N = {f['subscribers']:,} "
                                                      f"({b['messages']} messages, {b['received']:,} deliveries)"))
        if f.get("inbound_profiled", {}).get("profile"):
            lines.append(pyspy.markdown(f["inbound_profiled"]["profile"],
                                        f"Inbound path alone (`receiveChannelMessage`, no subscriber)"))
    for backend, http in results.get("http", {}).items():
        for name, profile in http.get("profiles", {}).items():
            title = "`{ me { id } }`, 32 connections" if name == "me" else "inbox page, 1 connection"
            lines.append(pyspy.markdown(profile, f"HTTP {title} ({backend})"))
    output.write_text("\n".join(lines).rstrip() + "\n")


if __name__ == "__main__":
    write(json.loads(pathlib.Path(sys.argv[1]).read_text()), pathlib.Path(sys.argv[2]))
