"""The ledger demo: accounts, transfers, the worker, and what came of it.

Run by tests/demo with the services' environment. Uses the product's own
tools: sluicectl migrate and enqueue, sluice-worker, and reads the results
back from Kafka.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "system"))
from harness import ROOT, Kafka, Worker, conf_text, read_results  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=50)
    ap.add_argument("--transfers", type=int, default=5000)
    ap.add_argument("--executors", type=int, default=4)
    args = ap.parse_args()

    brokers = os.environ["SLUICE_KAFKA_BROKERS"]
    conninfo = os.environ["SLUICE_PG_CONNINFO"]
    work = os.environ["SLUICE_SERVICES_DIR"]
    ctl = str(ROOT / "build" / "sluicectl")

    subprocess.run([ctl, "migrate", "--conninfo", conninfo, "--dir", str(ROOT / "schemas/sql"), "--set", "sluice",
                    "--dir", str(ROOT / "schemas/ledger"), "--set", "ledger"], check=True)
    kafka = Kafka(brokers, prefix="demo")
    jobs = kafka.create_topic(name="jobs", partitions=6)
    results = kafka.create_topic(name="job-results", partitions=3)
    dlq = kafka.create_topic(name="jobs.dlq", partitions=1)
    kafka.topics = []  # keep them for exploring after the demo

    rnd = random.Random(42)
    lines = [json.dumps({"type": "ledger.open", "key": f"acc-{i:03d}",
                         "data": {"account": f"acc-{i:03d}", "balance": 1000}}) for i in range(args.accounts)]
    for _ in range(args.transfers):
        a, b = rnd.sample(range(args.accounts), 2)
        to = f"acc-{b:03d}" if rnd.random() > 0.01 else "acc-nobody"  # some bound to be rejected
        lines.append(json.dumps({"type": "ledger.transfer", "key": f"acc-{a:03d}",
                                 "data": {"from": f"acc-{a:03d}", "to": to, "amount": rnd.randint(1, 400)}}))
    total = len(lines)
    enqueue = [ctl, "enqueue", "--brokers", brokers, "--topic", jobs, "--schema-dir", str(ROOT / "schemas/jobs")]

    conf = os.path.join(work, "demo-worker.conf")
    with open(conf, "w") as f:
        f.write(conf_text(brokers, conninfo, [jobs], results, dlq, "sluice-demo", executors=args.executors))
    log = os.path.join(work, "demo-worker.log")
    print(f"worker: build/sluice-worker -c {conf} ({args.executors} executors, log {log})")
    w = Worker(conf, log).start()
    # Accounts first, so that transfers find them.
    subprocess.run(enqueue, input="\n".join(lines[:args.accounts]) + "\n", text=True, check=True)
    read_results(kafka, results, args.accounts, timeout=120)
    t0 = time.time()
    subprocess.run(enqueue, input="\n".join(lines[args.accounts:]) + "\n", text=True, check=True)
    res = read_results(kafka, results, total, timeout=300)
    elapsed = time.time() - t0
    rc = w.stop(60)

    counts = res.status_counts()
    codes = {}
    for copies in res.by_job.values():
        err = copies[0][1]["data"].get("error")
        if err:
            codes[err["code"]] = codes.get(err["code"], 0) + 1
    out = subprocess.run(["psql", "-tAc", "select count(*), sum(balance) from ledger.accounts"],
                         capture_output=True, text=True, check=True).stdout.strip().split("|")
    print()
    print(f"jobs enqueued     {total}")
    print(f"results           {len(res.by_job)}  " + "  ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    print(f"refusals/errors   " + ("  ".join(f"{k}={v}" for k, v in sorted(codes.items())) or "none"))
    print(f"throughput        {args.transfers / elapsed:.0f} transfers/s end to end ({elapsed:.1f} s from "
          "enqueueing the transfers to reading their last result)")
    print(f"accounts          {out[0]}, sum of balances {out[1]} (opened with {int(out[0]) * 1000})")
    print(f"worker exit       {rc} after SIGTERM")
    ok = len(res.by_job) == total and int(out[1]) == int(out[0]) * 1000 and rc == 0
    print("demo:", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
