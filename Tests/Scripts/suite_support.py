"""What the end-to-end suites share: ports, results, the gateway process, memory readings."""
import contextlib, os, re, resource, signal, socket, subprocess, sys, time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Results:
    """One PASS/FAIL line per check; `finish` prints the count and exits 1 on any failure."""

    def __init__(self):
        self.outcomes = []

    def check(self, name, ok, detail=""):
        self.outcomes.append(bool(ok))
        print(("PASS " if ok else "FAIL ") + name + (f"  ({detail})" if detail else ""), flush=True)

    def finish(self, label):
        failed = self.outcomes.count(False)
        print(f"{label}: {len(self.outcomes) - failed} passed, {failed} failed")
        sys.exit(1 if failed else 0)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def raise_file_limit(wanted):
    """Up to `wanted` open files (root may raise the hard limit; others get the hard limit).
    Returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, wanted), max(hard, wanted)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def wait_for_port(port, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


@contextlib.contextmanager
def running_gateway(causeway, config_text, tmp, port):
    """The gateway on `config_text` (written to tmp/causeway.yaml, its log to tmp/gateway.log),
    up once `port` accepts; SIGTERM (then kill) when the block ends."""
    config = os.path.join(tmp, "causeway.yaml")
    with open(config, "w") as f:
        f.write(config_text)
    log = open(os.path.join(tmp, "gateway.log"), "w")
    gateway = subprocess.Popen([causeway, "run", "-c", config], stdout=log, stderr=log)
    try:
        wait_for_port(port)
        yield gateway
    finally:
        if gateway.poll() is None:
            gateway.send_signal(signal.SIGTERM)
        try:
            gateway.wait(timeout=10)
        except subprocess.TimeoutExpired:
            gateway.kill()
