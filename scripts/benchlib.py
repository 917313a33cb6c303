"""Helpers the benchmarks share: a free loopback port, a private nginx, a
status endpoint that always answers "processing", a process's CPU time."""
import os
import socket
import subprocess
import sys
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_nginx(root, http, connections=64):
    """Starts nginx (one process) under `root` with `http` inside its http block."""
    conf = os.path.join(root, "nginx.conf")
    os.makedirs(os.path.join(root, "tmp"), exist_ok=True)
    user = "user root;" if os.getuid() == 0 else ""
    with open(conf, "w") as f:
        f.write(f"""{user}
daemon off; master_process off; worker_processes 1;
pid {root}/nginx.pid; error_log {root}/error.log;
events {{ worker_connections {connections}; }}
http {{
  client_body_temp_path {root}/tmp/b; proxy_temp_path {root}/tmp/p; fastcgi_temp_path {root}/tmp/f;
  uwsgi_temp_path {root}/tmp/u; scgi_temp_path {root}/tmp/s;
{http}
}}
""")
    p = subprocess.Popen(["nginx", "-p", root, "-c", conf, "-e", os.path.join(root, "error.log")])
    for _ in range(200):
        if os.path.exists(os.path.join(root, "nginx.pid")):
            return p
        time.sleep(0.05)
    sys.exit("nginx did not start")


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User and system CPU seconds of a process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except FileNotFoundError:
        return 0.0


def start_status_server(root, connections):
    """nginx answering a dataset "processing" document for every ID under
    /v0/datasets/, each request logged (time, URI) to root/access.log.
    Returns the process, its port and the log's path."""
    os.makedirs(os.path.join(root, "www"), exist_ok=True)
    with open(os.path.join(root, "www", "processing.json"), "w") as f:
        f.write('{"status": "processing", "progress": 0.5, "csv_url": null}\n')
    port = free_port()
    access = os.path.join(root, "access.log")
    nginx = start_nginx(root, f"""  log_format t '$msec $request_uri';
  access_log {access} t buffer=64k flush=100ms;
  keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{port}; root {root}/www;
    location /v0/datasets/ {{ default_type application/json; try_files /processing.json =404; }} }}""", connections=connections)
    return nginx, port, access
