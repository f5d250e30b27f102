"""As the proxy's own user: sends half a request head and prints how many seconds passed until
the proxy closed the connection.

usage: slow_client.py PORT
"""
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
start = time.time()
s.settimeout(60)
try:
    while s.recv(100):
        pass
except OSError:
    pass
print("%.1f" % (time.time() - start))
