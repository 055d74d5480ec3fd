#!/usr/bin/env python3
"""Small helpers for test/bench.sh (standard library only).

  helper.py ports N                 N distinct free TCP ports on 127.0.0.1
  helper.py blackhole PORTFILE PIDFILE MAXSECONDS
                                    a listener that accepts connections and
                                    never reads or answers; exits by itself
  helper.py latency ARRIVALS COMMITS
                                    join nginx arrival times ($msec, event id)
                                    with commit times (event id, epoch, warm)
                                    and print: n missing p50 p99 max cold bytes
                                    protocol
  helper.py calc EXPR FORMAT        arithmetic on figures ("nan" when one is
                                    missing or a divisor is zero)
  helper.py median RESULTS SCENARIO FIGURE
                                    median of the values recorded for a figure
  helper.py table RESULTS           the markdown table of every figure
  helper.py slow SERVERLOG PID...   statements of these processes that
                                    auto_explain logged (over 1 s), by query,
                                    with the longest one's plan
"""
import math
import os
import re
import socket
import statistics
import sys
import time


def ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks))
    for s in socks:
        s.close()


def blackhole(port_file, pid_file, max_seconds):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(4096)
    s.settimeout(0.5)
    with open(pid_file + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(pid_file + ".tmp", pid_file)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(s.getsockname()[1]))
    os.rename(port_file + ".tmp", port_file)
    held = []
    deadline = time.monotonic() + float(max_seconds)
    while time.monotonic() < deadline and len(held) < 20000:
        try:
            conn, _ = s.accept()
            held.append(conn)      # never read, never answered
        except socket.timeout:
            pass


def percentile(sorted_values, q):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    k = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[k - 1]


def latency(arrivals_path, commits_path):
    # nginx: "$msec $http_webhook_id $content_length $status $server_protocol"; $msec has
    # millisecond resolution, truncated: add half a millisecond so the
    # error is +-0.5 ms rather than 0..-1 ms.
    arrivals = {}
    sizes = []
    protocols = {}
    with open(arrivals_path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 4 or parts[3][:1] != "2":
                continue
            arrivals.setdefault(parts[1], float(parts[0]) + 0.0005)
            if parts[2].isdigit():
                sizes.append(int(parts[2]))
            if len(parts) > 4:
                protocols[parts[4]] = protocols.get(parts[4], 0) + 1
    lat, cold, missing = [], None, 0
    with open(commits_path) as f:
        for line in f:
            parts = line.split("|")
            if len(parts) < 3:
                continue
            event_id, committed, warm = parts[0], float(parts[1]), parts[2].strip()
            if event_id not in arrivals:
                missing += 1
                continue
            ms = (arrivals[event_id] - committed) * 1000.0
            if warm == "t":
                cold = ms
            else:
                lat.append(ms)
    lat.sort()
    size = statistics.median(sizes) if sizes else float("nan")
    cold = float("nan") if cold is None else cold
    protocol = max(protocols, key=protocols.get) if protocols else "?"
    print(f"{len(lat)} {missing} {percentile(lat, 0.5):.3f} "
          f"{percentile(lat, 0.99):.3f} {(lat[-1] if lat else float('nan')):.3f} "
          f"{cold:.3f} {size:.0f} {protocol}")


def load(results_path):
    """Figures in order of first appearance: (scenario, figure) -> dict."""
    figures = {}
    with open(results_path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 4:
                continue
            scenario, figure, value, target = parts[:4]
            entry = figures.setdefault((scenario, figure),
                                       {"values": [], "target": target})
            entry["values"].append(value)
    return figures


def number(value):
    try:
        v = float(value)
    except ValueError:
        return None
    return None if math.isnan(v) else v


def fmt(v):
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    if v == int(v) and abs(v) < 1000:
        return str(int(v))
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def summarise(entry):
    """(median, low, high, verdict) of one figure; runs without a value
    ("nan") are left out, and fail the target."""
    target = entry["target"]
    values = [v for v in entry["values"] if v != "nan"]
    missing = len(entry["values"]) - len(values)
    if not values:
        return None, None, None, ("NO" if target and target != "-" else "")
    nums = [number(v) for v in values]
    if any(n is None for n in nums):
        texts = values
        shown = texts[-1] if len(set(texts)) == 1 else " / ".join(texts)
        if target.startswith("contains "):
            want = target[len("contains "):]
            verdict = "yes" if all(want in t for t in texts) else "NO"
        elif target and target != "-":
            verdict = "NO" if any(n is None for n in nums) else ""
        else:
            verdict = ""
        return shown, None, None, verdict
    med = statistics.median(nums)
    low, high = min(nums), max(nums)
    verdict = ""
    if target and target != "-":
        op, _, bounds = target.partition(" ")
        bound = float(bounds.split()[0])
        # a count that must be zero must be zero in every run
        probe = high if op == "==" else med
        if op == "in":
            lo, hi = (float(b) for b in bounds.split())
            ok = lo <= probe <= hi
        else:
            ok = {">=": probe >= bound, ">": probe > bound, "<=": probe <= bound,
                  "<": probe < bound, "==": probe == bound}[op]
        verdict = "yes" if ok and not missing else "NO"
    return med, low, high, verdict


def median(results_path, scenario, figure):
    entry = load(results_path).get((scenario, figure))
    if not entry:
        print("nan")
        return
    med, _, _, _ = summarise(entry)
    print("nan" if med is None or isinstance(med, str) else med)


def table(results_path):
    figures = load(results_path)
    print("| scenario | figure | median | min–max | target | met |")
    print("|---|---|---:|---:|---|---|")
    order = list(dict.fromkeys(scenario for scenario, _ in figures))
    rows = sorted(figures.items(), key=lambda item: order.index(item[0][0]))
    for (scenario, figure), entry in rows:
        med, low, high, verdict = summarise(entry)
        runs = len(entry["values"])
        span = "" if low is None else (fmt(low) if runs == 1 else f"{fmt(low)}–{fmt(high)}")
        missing = sum(1 for v in entry["values"] if v == "nan")
        if missing:
            span = (span + " " if span else "") + f"({missing} of {runs} runs n/a)"
        target = entry["target"] if entry["target"] not in ("", "-") else ""
        target = target.replace("contains ", "")
        if target.startswith("in "):
            target = "{}–{}".format(*target.split()[1:3])
        print(f"| {scenario} | {figure} | {fmt(med)} | {span} | {target} | {verdict} |")


def calc(expr, form):
    try:
        v = eval(expr.replace("nan", "float('nan')"), {"__builtins__": {"float": float, "min": min, "max": max}})
    except (ZeroDivisionError, SyntaxError, NameError, TypeError):
        v = float("nan")
    print("nan" if math.isnan(v) else form % v)


def slow(log_path, *pids):
    head = re.compile(r"\[(\d+)\] LOG:  duration: ([0-9.]+) ms  plan:")
    wanted = set(pids)
    entries = []          # (ms, query, plan lines)
    current = None
    with open(log_path, errors="replace") as f:
        for line in f:
            m = head.search(line)
            if m:
                current = None
                if m.group(1) in wanted:
                    current = [float(m.group(2)), "", []]
                    entries.append(current)
                continue
            if current is None:
                continue
            if not line.startswith("\t"):
                current = None
                continue
            text = line.rstrip("\n")
            if text.startswith("\tQuery Text:"):
                current[1] = text[len("\tQuery Text:"):].strip()
            elif text.startswith("\t\t") and not current[2]:
                current[1] += " " + text.strip()
            else:
                current[2].append(text[1:])
    if not entries:
        print("none")
        return
    groups = {}
    for ms, query, plan in entries:
        key = re.sub(r"\s+", " ", query)[:90]
        g = groups.setdefault(key, [0, 0.0, 0.0])
        g[0] += 1
        g[1] = max(g[1], ms)
        g[2] += ms
    print(f"{len(entries)} statements, {sum(e[0] for e in entries) / 1000:.1f} s in all:")
    for key, (n, longest, total) in sorted(groups.items(), key=lambda kv: -kv[1][2]):
        print(f"    {n} x (longest {longest / 1000:.1f} s, {total / 1000:.1f} s in all): {key}")
    ms, query, plan = max(entries, key=lambda e: e[0])
    print(f"  the longest ({ms / 1000:.1f} s), its plan:")
    for line in plan[:20]:
        print("    " + line)


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "ports":
        ports(int(args[0]))
    elif cmd == "blackhole":
        blackhole(*args)
    elif cmd == "latency":
        latency(*args)
    elif cmd == "calc":
        calc(*args)
    elif cmd == "median":
        median(*args)
    elif cmd == "table":
        table(*args)
    elif cmd == "slow":
        slow(*args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
