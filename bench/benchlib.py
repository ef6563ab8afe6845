"""What the Python benches share: a process's CPU ticks and RSS, nginx's worker, an nginx
config for one proxied location, Causeway started pinned, and stopping what a bench started."""
import os, shutil, subprocess, time


def ticks(pid):
    """utime + stime of `pid` (all its threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss(pid):
    """Resident memory of `pid`, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def start_causeway(binary, tmp, name, config):
    """Causeway on `config` (written to tmp/name.yaml), one worker's worth pinned to CPU 0."""
    path = f"{tmp}/{name}.yaml"
    with open(path, "w") as f:
        f.write(config)
    return subprocess.Popen(["taskset", "-c", "0", os.path.abspath(binary), "run", "-c", path, "--log-level", "warning"])


def nginx_worker(master):
    for _ in range(50):
        children = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise SystemExit("nginx worker not found")


def nginx_config(tmp, port, upstream, directives):
    """One worker, no logs, everything on `port` proxied to `upstream` with `directives`."""
    return f"""worker_processes 1; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/error.log;
events {{ worker_connections 65536; }}
worker_rlimit_nofile 65536;
http {{
  access_log off; client_body_temp_path {tmp}/b; proxy_temp_path {tmp}/p; fastcgi_temp_path {tmp}/f;
  uwsgi_temp_path {tmp}/u; scgi_temp_path {tmp}/s;
  server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://127.0.0.1:{upstream};
    proxy_http_version 1.1; {directives} proxy_read_timeout 1h; }} }}
}}
"""


def stop(processes, tmp):
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
    shutil.rmtree(tmp, ignore_errors=True)
