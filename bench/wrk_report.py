#!/usr/bin/env python3
"""wrk output parsing and the proxy-CPU report shared by bench/http1.sh and bench/compression.sh.

    wrk_report.py parse WRK_OUTPUT              -> requests, req/s, p99 ms, errors (TSV)
    wrk_report.py progress CLK_TCK < TSV_ROW    -> one progress line
    wrk_report.py report TSV CLK_TCK MD HEADER  -> table on stdout, markdown to MD
"""
import re, statistics, sys

UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}

def parse(path):
    text = open(path).read()
    req = re.search(r"^\s*(\d+) requests in ", text, re.M)
    rps = re.search(r"^Requests/sec:\s*([\d.]+)", text, re.M)
    p99 = re.search(r"^\s*99(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)
    if not (req and rps and p99):
        sys.exit("unparseable wrk output")
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    if non2xx:
        errors += int(non2xx.group(1))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if sock:
        errors += sum(int(x) for x in sock.groups())
    p99_ms = float(p99.group(1)) * UNITS_MS[p99.group(2)]
    print(f"{req.group(1)}\t{rps.group(1)}\t{p99_ms:.3f}\t{errors}")

def cost_us(ticks, requests, clk_tck):
    return ticks / clk_tck / requests * 1e6 if requests else float("nan")

def progress(clk_tck):
    p, rnd, ticks, req, rps, p99, err = sys.stdin.read().split("\t")
    c = cost_us(int(ticks), int(req), clk_tck)
    extra = f", {err.strip()} errors" if int(err) else ""
    print(f"[bench] round {rnd} {p:<9} {float(rps):>10.0f} req/s  p99 {float(p99):7.2f} ms"
          f"  cpu {c:6.2f} us/req{extra}")

def fmt(x, spec):
    return "n/a" if x is None or x != x else format(x, spec)

def report(tsv, clk_tck, md_path, header):
    rows = [l.rstrip("\n").split("\t") for l in open(tsv)][1:]
    order, runs = [], {}
    for p, rnd, ticks, req, rps, p99, err in rows:
        if p not in runs:
            order.append(p); runs[p] = []
        runs[p].append(dict(round=int(rnd), ticks=int(ticks), req=int(req), rps=float(rps),
                            p99=float(p99), err=int(err), cost=cost_us(int(ticks), int(req), clk_tck)))
    med = {p: dict(rps=statistics.median(r["rps"] for r in rs),
                   p99=statistics.median(r["p99"] for r in rs),
                   cost=statistics.median(r["cost"] for r in rs),
                   err=sum(r["err"] for r in rs)) for p, rs in runs.items()}

    def ratio(a, b):
        return a / b if a is not None and b else None

    references = [r for r in ("nginx", "haproxy") if r in med]
    cols = ["proxy", "req/s (median)", "p99 ms (median)", "CPU µs/request (median)"] \
        + [f"efficiency vs {r}" for r in references] + ["p99 vs nginx"]
    table = []
    for p in order:
        m = med[p]
        table.append([p, fmt(m["rps"], ".0f"), fmt(m["p99"], ".2f"), fmt(m["cost"], ".2f")]
                     + [fmt(ratio(med[r]["cost"], m["cost"]), ".2f") for r in references]
                     + [fmt(ratio(m["p99"], med.get("nginx", {}).get("p99")), ".2f")])

    widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(cols)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    print(line(cols)); print(line(["-" * w for w in widths]))
    for r in table:
        print(line(r))
    warnings = [f"{p}: {med[p]['err']} wrk errors (non-2xx/3xx or socket errors) over all rounds"
                for p in order if med[p]["err"]]
    for w in warnings:
        print("WARNING: " + w)

    with open(md_path, "w") as f:
        f.write(header.replace("\\n", "\n") + "\n")
        f.write("| " + " | ".join(cols) + " |\n")
        f.write("|" + "|".join(["---"] + ["---:"] * (len(cols) - 1)) + "|\n")
        for r in table:
            f.write("| " + " | ".join(r) + " |\n")
        for w in warnings:
            f.write(f"\n**Warning:** {w}\n")
        f.write("\nEfficiency = cost(reference) / cost(proxy); > 1 means less CPU per request "
                "than the reference. p99 vs nginx = p99(proxy) / p99(nginx).\n")
        f.write("\n### Per-round data\n\n| proxy | round | requests | req/s | p99 ms | "
                "CPU ticks | CPU µs/request | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
        for rnd in sorted({r["round"] for rs in runs.values() for r in rs}):
            for p in order:
                for r in runs[p]:
                    if r["round"] == rnd:
                        f.write(f"| {p} | {rnd} | {r['req']} | {r['rps']:.0f} | {r['p99']:.2f} | "
                                f"{r['ticks']} | {fmt(r['cost'], '.2f')} | {r['err']} |\n")

cmd = sys.argv[1]
if cmd == "parse":
    parse(sys.argv[2])
elif cmd == "progress":
    progress(int(sys.argv[2]))
elif cmd == "report":
    report(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
