"""What the Python benches share: a process's CPU ticks, nginx's worker, an nginx config for
one proxied location, and stopping what a bench started."""
import shutil, subprocess, time


def ticks(pid):
    """utime + stime of `pid` (all its threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


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
