"""Listens on a TCP port or a Unix socket path as its owner and records every connection and
byte it gets in LOG, until killed (LOG.ready once listening).

usage: squat.py tcp|unix PORT|PATH LOG
"""
import os, socket, sys
kind, where, log = sys.argv[1], sys.argv[2], sys.argv[3]
if kind == "tcp":
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", int(where)))
else:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(where)
    os.chmod(where, 0o777)  # anyone may connect: the squatter wants to be reached
s.listen(16)
open(log + ".ready", "w").close()
while True:
    c, _ = s.accept()
    with open(log, "a") as f:
        f.write("connection\n")
    c.settimeout(3)
    try:
        while True:
            d = c.recv(4096)
            if not d:
                break
            with open(log, "a") as f:
                f.write("bytes %d\n" % len(d))
    except OSError:
        pass
    c.close()
