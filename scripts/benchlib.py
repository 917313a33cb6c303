"""Helpers the benchmarks share: a free loopback port and a private nginx."""
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
