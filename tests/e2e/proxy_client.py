#!/usr/bin/env python3
# proxy_client.py — small clients for the proxy's end-to-end tests (run in $GUEST).
#
#   connect HOST PORT [TIMEOUT]   print "ok" or the errno name of the failed connect
#   burst HOST PORT N             N connects one after the other; print how many worked
#   halfclose HOST PORT           send 1000 bytes, shut write, read to EOF; print the reply's
#                                 first line and the byte count ("got 1000 100009")
#   readrst HOST PORT             send a line, read: print "reset", "eof" or "data"
#   clientrst HOST PORT           connect, send, close with RST (SO_LINGER 0); print "sent"
#   parallel HOST PORT PATH N     N concurrent HTTP/1.0 GETs; print how many got 200
#   udp HOST PORT N [SIZE]        N datagrams of SIZE bytes, each from its own socket
#                                 (its own flow); print how many echoes came back
import errno
import os
import select
import socket
import struct
import sys
import threading
import time


def err_name(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if e.errno else type(e).__name__


def connect(host, port, timeout=30.0):
    s = socket.create_connection((host, port), timeout=timeout)
    s.settimeout(timeout)
    return s


def main():
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "connect":
        try:
            connect(host, port, float(sys.argv[4]) if len(sys.argv) > 4 else 30.0).close()
            print("ok")
        except socket.timeout:
            print("client-timeout")
        except OSError as e:
            print(err_name(e))
    elif mode == "burst":
        ok = 0
        for _ in range(int(sys.argv[4])):
            try:
                connect(host, port, 10.0).close()
                ok += 1
            except OSError:
                pass
        print(ok)
    elif mode == "halfclose":
        s = connect(host, port)
        s.sendall(b"q" * 1000)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
        print(data.split(b"\n", 1)[0].decode(), len(data))
    elif mode == "readrst":
        s = connect(host, port)
        s.sendall(b"hello\n")
        try:
            print("data" if s.recv(100) else "eof")
        except ConnectionResetError:
            print("reset")
    elif mode == "clientrst":
        s = connect(host, port)
        s.sendall(b"x" * 1000)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        print("sent")
    elif mode == "parallel":
        path, n = sys.argv[4], int(sys.argv[5])
        ok = []
        barrier = threading.Barrier(n)

        def one():
            try:
                s = connect(host, port, 60.0)
                barrier.wait(timeout=60)
                s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
                data = b""
                while True:
                    b = s.recv(65536)
                    if not b:
                        break
                    data += b
                if data.startswith(b"HTTP/1.0 200") or data.startswith(b"HTTP/1.1 200"):
                    ok.append(1)
            except Exception as e:  # counted as a failure
                print("error:", e, file=sys.stderr)

        ts = [threading.Thread(target=one) for _ in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        print(len(ok))
    elif mode == "udp":
        n = int(sys.argv[4])
        size = int(sys.argv[5]) if len(sys.argv) > 5 else 100
        socks = []
        for i in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setblocking(False)
            s.connect((host, port))
            s.send(os.urandom(size))
            socks.append(s)
        # One deadline for all: flows that were refused never answer.
        pending, got, deadline = set(socks), 0, time.monotonic() + 5
        while pending and time.monotonic() < deadline:
            ready, _, _ = select.select(list(pending), [], [], max(0, deadline - time.monotonic()))
            for s in ready:
                pending.discard(s)
                try:
                    if len(s.recv(65536)) == size:
                        got += 1
                except OSError:
                    pass
        print(got)

if __name__ == "__main__":
    main()
