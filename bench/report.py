"""Prints bench/run's results next to their targets and this machine's measured limits.

Usage: python3 bench/report.py RESULTS.jsonl [full|smoke] [partial]. A smoke run only checks that
every scenario ran and moved all its records (no timing is judged); it exits 1 otherwise.
`partial` (a BENCH_ONLY run) does not ask for the scenarios that were skipped.
"""
import json
import sys

path, mode = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "full")
partial = "partial" in sys.argv[3:]
runs = {}
with open(path) as f:
    for line in f:
        line = line.strip()
        if line.startswith("{"):
            j = json.loads(line)
            runs[j["scenario"]] = j

expected = ["disk", "produce-1k-acks-all-durable", "produce-100b-lz4", "consume-100b", "latency-durable",
            "latency-no-fsync", "partitions"] + [f"produce-{n}-idle-{r}" for n in (0, 1000) for r in (1, 2, 3)] + \
    [f"{kind}-1k-{proto}" for kind in ("produce", "consume") for proto in ("plaintext", "ssl")]
expected += [f"disk-fsync-1k-1", "ack-durable-1000-p1-x1-1", "ack-no-fsync-1000-p1-x1-1"]
expected += ["produce-1k-durable-single", "produce-1k-durable-rf3", "failover-tuned-kill"]
missing = [] if partial else [s for s in expected if s not in runs]
problems = [f"missing scenario {s}" for s in missing]
for name, r in runs.items():
    if r.get("failed"):
        problems.append(f"{name}: {r['failed']} records failed")
    if r["kind"] in ("latency", "ack-latency") and r["records"] != r["expected"]:
        problems.append(f"{name}: {r['records']} of {r['expected']} records arrived")
if "produce-100b-lz4" in runs and "consume-100b" in runs:
    if runs["consume-100b"]["records"] != runs["produce-100b-lz4"]["records"]:
        problems.append("consume-100b did not read back every produced record")
for proto in ("plaintext", "ssl"):
    p, c = runs.get(f"produce-1k-{proto}"), runs.get(f"consume-1k-{proto}")
    if p and c and c["records"] != p["records"]:
        problems.append(f"consume-1k-{proto} did not read back every produced record")
for name, r in runs.items():
    if r["kind"] == "share-cluster" and (r["records"] != r["expected"] or r["duplicates"]):
        problems.append(f"{name}: {r['records']} of {r['expected']} records read, {r['duplicates']} more than once")
for name, r in runs.items():
    if r["kind"] == "failover" and (r["new_leader"] < 0 or r["new_leader"] == r["old_leader"]):
        problems.append(f"{name}: leadership did not move ({r['old_leader']} -> {r['new_leader']})")
if "partitions" in runs and runs["partitions"]["partitions"] != runs["partitions"]["topics"] * 10:
    problems.append("partitions: Metadata did not list every partition")

if mode == "smoke":
    for p in problems:
        print("bench smoke:", p)
    print("bench smoke:", "ok" if not problems else "FAILED", f"({len(runs)} scenarios)")
    sys.exit(1 if problems else 0)


def row(scenario, figure, target, verdict):
    print(f"| {scenario} | {figure} | {target} | {verdict} |")


def ok(cond):
    return "met" if cond else "**not met**"


disk = runs.get("disk", {})
print()
print(f"machine: fdatasync'd sequential writes {disk.get('fdatasync_write_mb_s')} MB/s, "
      f"fdatasync of a 4 KiB append p50/p99/p99.9/max {disk.get('fdatasync_4k_p50_ms')}/{disk.get('fdatasync_4k_p99_ms')}/"
      f"{disk.get('fdatasync_4k_p999_ms')}/{disk.get('fdatasync_4k_max_ms')} ms, "
      f"page-cache writes {disk.get('page_cache_write_mb_s')} MB/s "
      f"({disk.get('page_cache_write_cpu_s_per_gb')} CPU-s/GB)")
print()
print("| scenario | result | target | verdict |")
print("|---|---|---|---|")
r = runs.get("produce-1k-acks-all-durable")
if r and disk:
    ratio = r["mb_per_s"] / disk["fdatasync_write_mb_s"]
    row("produce 1 KiB acks=all durable", f"{r['mb_per_s']} MB/s = {ratio:.0%} of fdatasync bandwidth",
        ">= 80 %", ok(ratio >= 0.8))
r = runs.get("produce-100b-lz4")
if r:
    row("produce 100 B acks=1 lz4", f"{r['records_per_s']:,.0f} rec/s, broker {r.get('broker_cpu_s_per_gb')} CPU-s/GB "
        f"(page cache alone {disk.get('page_cache_write_cpu_s_per_gb')})",
        ">= 2,500,000 rec/s, <= 0.35 CPU-s/GB",
        ok(r["records_per_s"] >= 2_500_000 and r.get("broker_cpu_s_per_gb", 9) <= 0.35))
r = runs.get("consume-100b")
if r:
    row("consume 100 B from page cache", f"{r['records_per_s']:,.0f} rec/s, broker {r.get('broker_cpu_s_per_gb')} CPU-s/GB",
        ">= 2,500,000 rec/s, <= 0.15 CPU-s/GB",
        ok(r["records_per_s"] >= 2_500_000 and r.get("broker_cpu_s_per_gb", 9) <= 0.15))
for name, limit in (("latency-durable", 2.0), ("latency-no-fsync", 1.0)):
    r = runs.get(name)
    if r:
        row(name, f"p50 {r['p50_ms']} / p99 {r['p99_ms']} / p99.9 {r['p999_ms']} / max {r['max_ms']} ms",
            f"p99 <= {limit} ms", ok(r["p99_ms"] <= limit))
r = runs.get("partitions")
if r:
    row(f"{r['partitions']} partitions", f"start-up {r['startup_s']} s, idle RSS {r['idle_rss_mb']} MB, "
        f"Metadata p50 {r['metadata_p50_ms']} ms (max {r['metadata_max_ms']})",
        "<= 3 s, <= 300 MB, <= 50 ms",
        ok(r["startup_s"] <= 3 and r["idle_rss_mb"] <= 300 and r["metadata_p50_ms"] <= 50))
def median_rate(idle):
    rates = sorted(runs[f"produce-{idle}-idle-{r}"]["records_per_s"] for r in (1, 2, 3)
                   if f"produce-{idle}-idle-{r}" in runs)
    return rates[len(rates) // 2] if rates else None


a, b = median_rate(0), median_rate(1000)
if a and b:
    ratio = b / a
    row("1,000 idle connections", f"median {b:,.0f} vs {a:,.0f} rec/s without them ({ratio:.0%})",
        "within 10 %", ok(ratio >= 0.9))
for kind in ("produce", "consume"):
    plain, ssl = runs.get(f"{kind}-1k-plaintext"), runs.get(f"{kind}-1k-ssl")
    if plain and ssl:
        ratio = ssl["mb_per_s"] / plain["mb_per_s"]
        row(f"{kind} 1 KiB over TLS", f"{ssl['mb_per_s']} MB/s vs {plain['mb_per_s']} MB/s plaintext ({ratio:.0%}), "
            f"broker {ssl.get('broker_cpu_s_per_gb')} vs {plain.get('broker_cpu_s_per_gb')} CPU-s/GB",
            "(measured, no target)", "-")

single, rf3 = runs.get("produce-1k-durable-single"), runs.get("produce-1k-durable-rf3")
if single and rf3:
    ratio = rf3["mb_per_s"] / single["mb_per_s"]
    cpu = rf3["broker_cpu_s_per_gb"] / single["broker_cpu_s_per_gb"]
    row("produce 1 KiB acks=all durable, RF=3 on three brokers", f"{rf3['mb_per_s']} MB/s vs {single['mb_per_s']} MB/s on "
        f"one broker ({ratio:.0%}); the three brokers {rf3['broker_cpu_s_per_gb']} CPU-s/GB together, "
        f"{cpu:.1f}x one broker's {single['broker_cpu_s_per_gb']}", "<= 3.5x one broker's CPU per GB", ok(cpu <= 3.5))
for name, r in sorted(runs.items()):
    if r["kind"] == "cluster-idle" and r["replication_factor"] > 1:
        base = runs.get(name.replace(f"-rf{r['replication_factor']}", "-rf1"))
        if base is None:
            continue  # the 10,000-partition run has its own row below
        row(f"idle cluster, {r['partitions']:,} partitions RF={r['replication_factor']}",
            f"ISR full {r['isr_full_s']} s after creation; per broker at most {r['max_broker_links']:.0f} "
            f"replication connections, {r['max_idle_cpu_s_per_min']} CPU-s/min idle "
            f"(RF=1: {base.get('max_idle_cpu_s_per_min')}), RSS {r['max_rss_mb']:.0f} MB (RF=1: {base.get('max_rss_mb')})",
            "<= 15 s; <= 2 (1 fetcher x 2 brokers) + a constant; <= 0.5 CPU-s/min",
            ok(r["isr_full_s"] <= 15 and r["max_broker_links"] <= 4 and r["max_idle_cpu_s_per_min"] <= 0.5))
for case, target in (("default-kill", None), ("default-term", 0.5), ("tuned-kill", 2.0), ("tuned-term", 0.5)):
    r = runs.get(f"failover-{case}")
    if r:
        pause = r["max_pause_ms"] / 1000
        row(f"failover, {case}",
            f"producer paused {pause:.2f} s (first ack {r['first_ack_after_signal_ms']} ms after the signal)",
            f"<= {target} s" if target else "(Kafka's 9 s session)", ok(pause <= target) if target else "-")


def median(values):
    values = sorted(values)
    return values[len(values) // 2] if values else None


fresh, rolling = runs.get("roll-segment-1073741824"), runs.get("roll-segment-16777216")
if fresh and rolling:
    # the seconds holding a roll are the run's slowest ones, as many as it rolled (one per 16 MiB);
    # each run is judged against its own median second (a broker's first run is slower overall)
    seconds = rolling["per_second_p99_ms"]
    rolls = max(1, int(rolling["records"] * (rolling["record_size"] + 70) / (16 << 20)))
    roll_seconds = sorted(seconds)[-rolls:]
    first, later = fresh["per_second_p99_ms"][:4], fresh["per_second_p99_ms"][4:]
    row("a segment's first seconds and its rolls (1 KiB acks=all, 5,000/s)",
        f"per-second p99 in the {rolls} seconds with a roll: median {median(roll_seconds)} ms, worst {max(roll_seconds)} ms, "
        f"against {median(seconds)} ms (median second of the same run); a fresh segment's first four seconds {first} ms "
        f"against {median(later)} ms later",
        "rolls and first seconds within 2x of steady",
        ok(median(roll_seconds) <= 2 * median(seconds) and median(first) <= 2 * median(later)))
for name, r in sorted(runs.items()):
    compared = r["kind"] == "share-cluster" and name.endswith("-rf3") and not name.startswith("warmup")
    one = runs.get(name.replace("-rf3", "-single")) if compared else None
    if one:
        ratio = r["seconds"] / one["seconds"]
        row(f"share group, {r['producers']} producer(s) and {r['consumers']} share consumer(s), {r['records']:,} records",
            f"{r['seconds']} s on three brokers (RF=3) vs {one['seconds']} s on one ({ratio:.1f}x)", "<= 1.5x", ok(ratio <= 1.5))
for name, r in sorted(runs.items()):
    if r["kind"] == "produce" and name.startswith("produce-1k-") and name.endswith("-partitions"):
        n = name[len("produce-1k-"):-len("-partitions")]
        idle, c = runs.get(f"cluster-idle-{n}-rf3", {}), runs.get(f"consume-1k-{n}-partitions", {})
        row(f"{int(n):,} partitions RF=3 on three brokers",
            f"ISR full {idle.get('isr_full_s')} s after creation; {r['records']:,} records produced ({r['mb_per_s']} MB/s, "
            f"{r.get('failed')} failed) and {c.get('records')} consumed ({c.get('mb_per_s')} MB/s); idle "
            f"{idle.get('max_idle_cpu_s_per_min')} CPU-s/min, RSS {idle.get('max_rss_mb')} MB per broker",
            "start, full ISR, produce and consume all", ok(c.get("records") == r["records"] and not r.get("failed")))
copy, disk_rate = runs.get("reassign-unthrottled"), runs.get("disk-for-reassign", {}).get("fdatasync_write_mb_s")
if copy and disk_rate:
    share = copy["mb_per_s"] / disk_rate
    row("reassignment copy, unthrottled", f"{copy['mb_per_s']} MB/s, {share:.0%} of this disk's fdatasync'd sequential "
        f"write rate ({disk_rate} MB/s)", ">= 70 %", ok(share >= 0.7))


# acks=all delivery latency (issue 13): medians over rounds of durable, no-fsync and the disk's
# own fdatasync of 1 KiB appends, against the targets
rounds = sorted({k.rsplit("-", 1)[1] for k in runs if k.startswith("ack-durable-")})
disk_fsync = {q: median([runs[f"disk-fsync-1k-{r}"][f"{q}_ms"] for r in rounds if f"disk-fsync-1k-{r}" in runs])
              for q in ("p50", "p99", "p999")}
if rounds and disk_fsync["p50"] is not None:
    print()
    print(f"disk fdatasync of a 1 KiB append, median of rounds: p50 {disk_fsync['p50']} / p99 {disk_fsync['p99']} / "
          f"p99.9 {disk_fsync['p999']} ms")
    for rate in (1000, 5000):
        paced = {q: median([runs[f"disk-paced-{rate}-{r}"][f"{q}_ms"] for r in rounds
                            if f"disk-paced-{rate}-{r}" in runs]) for q in ("p50", "p99", "p999")}
        if paced["p50"] is not None:
            print(f"the disk alone at {rate} appends/s (1 KiB, fdatasyncs back to back in a second thread), each "
                  f"append until covered: p50 {paced['p50']} / p99 {paced['p99']} / p99.9 {paced['p999']} ms")
    print()
    print("| acks=all, linger.ms=0, 1 KiB | durable p50 / p99 / p99.9 ms | no-fsync p50 / p99 / p99.9 ms | targets |")
    print("|---|---|---|---|")
    shapes = sorted({k[len("ack-durable-"):].rsplit("-", 1)[0] for k in runs if k.startswith("ack-durable-")},
                    key=lambda s: [int(x.strip("px")) for x in s.split("-")])
    for shape in shapes:
        d = {q: median([runs[f"ack-durable-{shape}-{r}"][f"{q}_ms"] for r in rounds if f"ack-durable-{shape}-{r}" in runs])
             for q in ("p50", "p99", "p999")}
        n = {q: median([runs[f"ack-no-fsync-{shape}-{r}"][f"{q}_ms"] for r in rounds
                        if f"ack-no-fsync-{shape}-{r}" in runs]) for q in ("p50", "p99", "p999")}
        if None in d.values() or None in n.values():
            continue
        met = [d["p99"] <= n["p99"] + 3 * disk_fsync["p99"], d["p999"] <= n["p999"] + 5,
               d["p50"] <= n["p50"] + disk_fsync["p50"] + 0.5]
        rate, parts, producers = shape.split("-")
        print(f"| {rate}/s, {parts[1:]} partition(s), {producers[1:]} producer(s) | {d['p50']} / {d['p99']} / {d['p999']} "
              f"| {n['p50']} / {n['p99']} / {n['p999']} | p99 {ok(met[0])}, p99.9 {ok(met[1])}, p50 {ok(met[2])} |")

for p in problems:
    print("problem:", p)
sys.exit(1 if problems else 0)
