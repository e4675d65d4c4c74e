#!/usr/bin/env python3
"""Helpers of bench/compare-nchan.sh: judge one `watchbus bench --json` run,
and build the nchan-vs-watchbus table from a results directory.

  compare_table.py check FILE [--max-p99-us N] [--min-rate-frac F]
      exit 0 when the run sustained its rate: every subscriber connected and
      stayed, zero loss / duplicates / reorders, every delivery drained,
      p99 latency < N µs, and the publishers reached F of the asked rate.
      Prints the reason on one line either way.
  compare_table.py table DIR
      prints the table and writes DIR/table.txt, DIR/table.md, DIR/summary.json.
"""

import argparse
import json
import math
import os
import re
import statistics
import sys

SERVERS = ("nchan", "watchbus")
NOTES = []  # lines printed under the table
SCENARIO_TITLES = {
    "a": "(a) 1 key, fan-out",
    "b": "(b) 1 key, big fan-out",
    "c": "(c) max rate, big fan-out",
    "d": "(d) many keys, random",
    "e": "(e) idle connections",
    "f": "(f) publish only",
}


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def dig(obj, *keys):
    for k in keys:
        if obj is None:
            return None
        obj = obj.get(k) if isinstance(obj, dict) else None
    return obj


def judge(r, max_p99_us, min_rate_frac):
    """(passed, reason) for one fan-out run."""
    if r is None:
        return False, "no report (bench failed)"
    subs = r["subscribers"]
    if subs["connected"] < subs["requested"]:
        return False, f"{subs['connected']}/{subs['requested']} subscribers connected"
    if subs["dropped"]:
        return False, f"{subs['dropped']} subscribers dropped"
    d = r.get("deliveries") or {}
    if d.get("lost") or d.get("duplicates") or d.get("reordered"):
        return False, f"loss/dup/reorder {d.get('lost')}/{d.get('duplicates')}/{d.get('reordered')}"
    if not d.get("drained", False):
        return False, "drain timed out"
    if r["publish"]["errors"]:
        return False, f"publish errors {r['publish']['errors']}"
    p99 = dig(r, "latency_us", "p99") or 0
    if p99 >= max_p99_us:
        return False, f"p99 {p99 / 1000:.1f} ms"
    rate = r["config"]["rate"]
    got = r["publish"]["requests_per_sec"]
    if rate and got < min_rate_frac * rate:
        return False, f"publishers reached {got:.0f}/{rate} events/s"
    return True, f"ok: {d.get('per_sec', 0):.0f} deliveries/s, p99 {p99 / 1000:.1f} ms"


# ---------------------------------------------------------------- table

def fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10000 else str(v)
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return "-"
    a = abs(v)
    # Separators from five digits on, so the figures of one row (each
    # round's, say) read alike whichever side of 100,000 they fall.
    if a >= 10000:
        s = f"{v:,.0f}"
    elif a >= 100:
        s = f"{v:.0f}"
    elif a >= 10:
        s = f"{v:.1f}"
    else:
        s = f"{v:.2f}"
    return s + unit


def ratio(n, w, better):
    """watchbus/nchan when higher is better, nchan/watchbus when lower is:
    above 1 means watchbus is better either way."""
    if better is None or not isinstance(n, (int, float)) or not isinstance(w, (int, float)):
        return "-"
    if better == "higher":
        return f"{w / n:.2f} (w/n)" if n > 0 else "-"
    return f"{n / w:.2f} (n/w)" if w > 0 else "-"


def ms(us):
    return None if us is None else us / 1000.0


def mib(b):
    return None if b is None else b / (1024.0 * 1024.0)


def fanout_rows(r):
    """(metric, value, better) for a fan-out run."""
    if r is None:
        return None
    d = r.get("deliveries") or {}
    lat = r.get("latency_us") or {}
    sv = r.get("server") or {}
    subs = r["subscribers"]
    rate = r["config"]["rate"]
    return [
        ("deliveries/s", d.get("per_sec"), "higher"),
        (f"events published/s (asked {rate})", r["publish"]["requests_per_sec"], "higher"),
        ("latency p50 ms", ms(lat.get("p50")), "lower"),
        ("latency p99 ms", ms(lat.get("p99")), "lower"),
        ("latency max ms", ms(lat.get("max")), "lower"),
        ("server CPU µs/delivery", sv.get("cpu_us_per_delivery"), "lower"),
        ("server peak RSS MiB", mib(sv.get("rss_peak_bytes")), "lower"),
        ("publishes sent > 2 ms late", r["publish"].get("late", "?"), None),
        ("loss/dup/reorder", f"{d.get('lost', '?')}/{d.get('duplicates', '?')}/{d.get('reordered', '?')}", None),
        ("subscribers connected", f"{subs['connected']}/{subs['requested']}"
         + (f" ({subs['dropped']} dropped)" if subs["dropped"] else ""), None),
        ("result", ("OK" if r["ok"] else "PROBLEMS") + ("" if d.get("drained", True) else ", drain timed out"), None),
    ]


def idle_rows(r):
    if r is None:
        return None
    sv = r.get("server") or {}
    per = sv.get("rss_per_connection_bytes")
    subs = r["subscribers"]
    return [
        ("memory per connection KiB", None if per is None else per / 1024.0, "lower"),
        ("RSS holding them MiB", mib(sv.get("rss_end_bytes")), "lower"),
        ("RSS before connecting MiB", mib(sv.get("rss_before_bytes")), None),
        ("connections held", f"{subs['connected']}/{subs['requested']}"
         + (f" ({subs['dropped']} dropped)" if subs["dropped"] else ""), None),
    ]


def publish_rows(r):
    if r is None:
        return None
    p = r["publish"]
    sv = r.get("server") or {}
    errs = sum(p["errors"].values()) if p["errors"] else 0
    return [
        (f"publish req/s (bench, {r['config']['publishers']} conns)", p["requests_per_sec"], "higher"),
        ("publish latency p50 ms", ms(p["latency_us"].get("p50")), "lower"),
        ("publish latency p99 ms", ms(p["latency_us"].get("p99")), "lower"),
        ("server CPU µs/publish", sv.get("cpu_us_per_publish"), "lower"),
        ("publish errors", str(errs), None),
    ]


def wrk_rows(path):
    try:
        text = open(path).read()
    except OSError:
        return None
    m = re.search(r"Requests/sec:\s*([\d.]+)", text)
    bad = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    errs = re.search(r"Socket errors:[^\n]*", text)
    conns = re.search(r"(\d+) threads and (\d+) connections", text)
    label = f"publish req/s (wrk, {conns.group(2)} conns)" if conns else "publish req/s (wrk)"
    rows = [(label, float(m.group(1)) if m else None, "higher")]
    rows.append(("wrk non-2xx / socket errors",
                 f"{bad.group(1) if bad else 0} / {errs.group(0).split(':', 1)[1].strip() if errs else 'none'}",
                 None))
    return rows


def publish_only_rows(d, server):
    """Scenario (f): the rows of every round (bench and wrk), merged: the
    median of each figure, and the requests/s of each round."""
    rounds = []
    n = 1
    while os.path.exists(os.path.join(d, f"f-{server}-r{n}.json")) or \
            os.path.exists(os.path.join(d, f"f-wrk-{server}-r{n}.txt")):
        rounds.append((publish_rows(load(os.path.join(d, f"f-{server}-r{n}.json"))) or [])
                      + (wrk_rows(os.path.join(d, f"f-wrk-{server}-r{n}.txt")) or []))
        n += 1
    rounds = [r for r in rounds if r]
    if not rounds:
        return None
    metrics = []
    for r in rounds:
        for m, _, b in r:
            if m not in [x[0] for x in metrics]:
                metrics.append((m, b))
    rows = []
    for m, b in metrics:
        vals = [v for r in rounds for (mm, v, _) in r if mm == m]
        nums = [v for v in vals if isinstance(v, (int, float))]
        if b is not None and nums:
            label = m if len(rounds) == 1 else f"{m}, median of {len(nums)}"
            rows.append((label, statistics.median(nums), b))
        else:
            rows.append((m, " · ".join(dict.fromkeys(str(v) for v in vals)), None))
    if len(rounds) > 1:
        for m, b in metrics:
            if b == "higher":
                vals = [v for r in rounds for (mm, v, _) in r if mm == m]
                rows.append((f"{m}, each round", " · ".join(fmt(v) for v in vals), None))
    return rows


def wrk_rate(path):
    """wrk's requests/s in the file at `path`, or None."""
    rows = wrk_rows(path)
    return rows[0][1] if rows and isinstance(rows[0][1], float) else None


def wrk_rates(d, server):
    """wrk's requests/s of every (f) round against `server`."""
    rates, n = [], 1
    while os.path.exists(os.path.join(d, f"f-wrk-{server}-r{n}.txt")):
        rate = wrk_rate(os.path.join(d, f"f-wrk-{server}-r{n}.txt"))
        if rate is not None:
            rates.append(rate)
        n += 1
    return rates


def floor_note(d):
    """Scenario (f)'s floor: wrk against a server that does nothing but
    answer, set beside the two servers' wrk medians."""
    floor = wrk_rates(d, "floor")
    if not floor:
        return None
    f = statistics.median(floor)
    note = (f"(f) ceiling: wrk against a server that only answers (the transport_floor example), "
            f"median {fmt(f)} req/s (rounds: {' · '.join(fmt(v) for v in floor)})")
    medians = {s: statistics.median(r) for s in SERVERS if (r := wrk_rates(d, s))}
    if medians:
        note += "; " + ", ".join(f"{s} reached {100 * m / f:.0f} % of it" for s, m in medians.items())
    if "nchan" in medians:
        note += f"; the ceiling is {f / medians['nchan']:.2f}× nchan's median"
    return note


def search_rows(path_prefix):
    """Scenario (c): the trials file written by the shell script."""
    trials = []
    try:
        with open(path_prefix + "-trials.tsv") as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) >= 4:
                    trials.append((int(parts[0]), parts[1] == "pass", parts[2], parts[3]))
    except OSError:
        return None
    if not trials:
        return None
    passed = [t for t in trials if t[1]]
    best = max(passed, key=lambda t: t[0]) if passed else None
    br = load(best[2]) if best else None
    fails = [t[0] for t in trials if not t[1]]
    first_fail = min([f for f in fails if best is None or f > best[0]], default=None)
    rows = [
        ("highest rate passed, events/s", best[0] if best else 0, "higher"),
        ("deliveries/s at that rate", dig(br, "deliveries", "per_sec") if br else 0.0, "higher"),
        ("latency p99 ms at that rate", ms(dig(br, "latency_us", "p99")) if br else None, "lower"),
        ("server CPU µs/delivery there", dig(br, "server", "cpu_us_per_delivery") if br else None, "lower"),
        ("lowest rate failed, events/s", first_fail if first_fail is not None else "none", None),
        ("trials (listed below)", str(len(trials)), None),
    ]
    notes = [f"{t[0]}/s {'pass' if t[1] else 'FAIL'} ({t[3]})" for t in trials]
    return rows, notes


def scenario_rows(d, sc):
    """{server: rows or None}"""
    out = {}
    for s in SERVERS:
        base = os.path.join(d, f"{sc}-{s}")
        if sc == "c":
            got = search_rows(base)
            out[s] = got[0] if got else None
            if got:
                NOTES.append(f"(c) {s} trials: " + "; ".join(got[1]))
        elif sc == "e":
            out[s] = idle_rows(load(base + ".json"))
        elif sc == "f":
            out[s] = publish_only_rows(d, s)
        else:
            out[s] = fanout_rows(load(base + ".json"))
    if sc == "f" and (note := floor_note(d)):
        NOTES.append(note)
    return out


def build_table(d):
    scenarios = [sc for sc in "abcdef"
                 if any(os.path.exists(os.path.join(d, f"{sc}-{s}{ext}"))
                        for s in SERVERS for ext in (".json", ".stderr", "-trials.tsv", "-r1.json"))]
    rows = []
    summary = {}
    for sc in scenarios:
        per = scenario_rows(d, sc)
        metrics = []
        for s in SERVERS:
            for m, _, b in per[s] or []:
                if m not in [x[0] for x in metrics]:
                    metrics.append((m, b))
        if not metrics:
            rows.append((SCENARIO_TITLES[sc], "bench run failed", "FAILED" if per["nchan"] is None else "",
                         "FAILED" if per["watchbus"] is None else "", "-"))
            continue
        for i, (m, b) in enumerate(metrics):
            vals = {}
            for s in SERVERS:
                if per[s] is None:
                    vals[s] = "FAILED"
                else:
                    vals[s] = next((v for (mm, v, _) in per[s] if mm == m), None)
            rows.append((SCENARIO_TITLES[sc] if i == 0 else "", m, fmt(vals["nchan"]),
                         fmt(vals["watchbus"]), ratio(vals["nchan"], vals["watchbus"], b)))
            summary.setdefault(sc, {})[m] = {"nchan": vals["nchan"], "watchbus": vals["watchbus"],
                                             "better": b}
    return rows, summary


def render_text(rows):
    head = ("scenario", "metric", "nchan", "watchbus", "ratio")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(5)]
    lines = []

    def line(r):
        return "  ".join(str(c).ljust(widths[i]) if i < 2 else str(c).rjust(widths[i])
                         for i, c in enumerate(r)).rstrip()
    lines.append(line(head))
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        if r[0] and len(lines) > 2:
            lines.append("")
        lines.append(line(r))
    lines.append("")
    lines.append("ratio > 1 means watchbus is better: (w/n) = watchbus/nchan where higher is better,")
    lines.append("(n/w) = nchan/watchbus where lower is better; '-' = no ratio for that row.")
    lines.extend(NOTES)
    return "\n".join(lines) + "\n"


def render_md(rows):
    out = ["| scenario | metric | nchan | watchbus | ratio |", "|---|---|---:|---:|---:|"]
    for r in rows:
        out.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
    out.append("")
    out.append("ratio > 1 means watchbus is better: (w/n) = watchbus/nchan where higher is better, "
               "(n/w) = nchan/watchbus where lower is better.")
    out.extend(["", *(f"- {n}" for n in NOTES)] if NOTES else [])
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("file")
    c.add_argument("--max-p99-us", type=float, default=1_000_000)
    c.add_argument("--min-rate-frac", type=float, default=0.9)
    t = sub.add_parser("table")
    t.add_argument("dir")
    a = ap.parse_args()
    if a.cmd == "check":
        ok, why = judge(load(a.file), a.max_p99_us, a.min_rate_frac)
        print(why)
        sys.exit(0 if ok else 1)
    rows, summary = build_table(a.dir)
    text = render_text(rows)
    with open(os.path.join(a.dir, "table.txt"), "w") as f:
        f.write(text)
    with open(os.path.join(a.dir, "table.md"), "w") as f:
        f.write(render_md(rows))
    with open(os.path.join(a.dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
