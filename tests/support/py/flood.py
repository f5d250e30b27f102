"""As another user: opens N connections (each connection must be closed by the proxy within a
second, having sent nothing), opens slow-header connections, and sends full requests with the
right URL, until STOP exists or SECS pass. Prints JSON counts. Touches STOP.going once the
first 20 connections are done (the flood is under way).

usage: flood.py PORT N SECS STOP PATH
"""
import json, os, socket, sys, time
port, n, secs, stop, path = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
st = {"opened": 0, "closed_at_once": 0, "answered": 0, "held": 0, "connect_failed": 0, "requests": 0}
def one(payload):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
    except OSError as e:
        st["connect_failed"] += 1
        st.setdefault("connect_errors", {}).setdefault(type(e).__name__ + ":" + str(e.errno), 0)
        st["connect_errors"][type(e).__name__ + ":" + str(e.errno)] += 1
        return
    st["opened"] += 1
    s.settimeout(1.0)
    try:
        if payload:
            s.sendall(payload)
        data = s.recv(100)
        st["answered" if data else "closed_at_once"] += 1
    except (ConnectionResetError, BrokenPipeError):
        st["closed_at_once"] += 1
    except socket.timeout:
        st["held"] += 1
    finally:
        s.close()
deadline = time.time() + secs
i = 0
# N connections that were opened (a refused connect does not count), then on until STOP.
while st["opened"] < n or (time.time() < deadline and not os.path.exists(stop)):
    if i % 10 == 0:
        st["requests"] += 1
        one(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (path, port)).encode())
    elif i % 10 == 1:
        one(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    else:
        one(b"")
    i += 1
    if i == 20:
        open(stop + ".going", "w").close()
    if time.time() > deadline + 60:
        break
print(json.dumps(st))
