#!/usr/bin/env python3
# proxy_servers.py — small servers for the proxy's end-to-end tests (run in $SRV
# or $HOST, started by the t_tcp_*, t_policy_*, t_udp_* scripts).
#
#   http ADDR PORT DIR          HTTP/1.1 GET of files under DIR (threads; no reverse
#                               DNS at bind, unlike http.server's server_bind)
#   sink ADDR PORT              each connection: read to EOF, answer "<bytes> <sha256>\n", close
#   halfclose ADDR PORT         read to EOF, then answer "got <bytes>\n" + 100000 bytes, close
#   rst ADDR PORT               accept, read a line, close with RST (SO_LINGER 0)
#   watchrst ADDR PORT FILE     accept, read until error; write "reset" or "eof" to FILE
#   udpecho ADDR PORT           UDP echo
import hashlib
import http.server
import os
import socket
import socketserver
import struct
import sys
import threading


class Http(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass


class HttpServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 512

    def server_bind(self):
        # HTTPServer.server_bind() calls getfqdn(): a DNS lookup we cannot answer.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


def listener(addr, port):
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(512)
    return s


def serve(s, handler):
    while True:
        c, _ = s.accept()
        threading.Thread(target=handler, args=(c,), daemon=True).start()


def sink(c):
    h, n = hashlib.sha256(), 0
    while True:
        b = c.recv(1 << 20)
        if not b:
            break
        h.update(b)
        n += len(b)
    c.sendall(f"{n} {h.hexdigest()}\n".encode())
    c.close()


def halfclose(c):
    n = 0
    while True:
        b = c.recv(65536)
        if not b:
            break
        n += len(b)
    c.sendall(f"got {n}\n".encode() + b"x" * 100000)
    c.close()


def rst(c):
    c.recv(100)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()


def watchrst(path):
    def h(c):
        what = "eof"
        try:
            while c.recv(65536):
                pass
        except ConnectionResetError:
            what = "reset"
        with open(path, "w") as f:
            f.write(what + "\n")
        c.close()
    return h


def banner(c):
    # a server-first protocol (SSH, SMTP): speaks before the client does
    c.sendall(b"SSH-2.0-moat-test\r\n")
    try:
        b = c.recv(100)
        if b:
            c.sendall(b"echo " + b)
    except OSError:
        pass
    c.close()


def tls(cert, key):
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)

    def h(c):
        try:
            t = ctx.wrap_socket(c, server_side=True)
            t.sendall(b"tls hello " + (t.recv(100) or b"") + b"\n")
            t.close()
        except (OSError, ssl.SSLError):
            c.close()
    return h


def main():
    mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "http":
        os.chdir(sys.argv[4])
        HttpServer.address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        HttpServer((addr, port), Http).serve_forever()
    elif mode == "udpecho":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((addr, port))
        while True:
            b, peer = s.recvfrom(65536)
            s.sendto(b, peer)
    else:
        handler = {"sink": sink, "halfclose": halfclose, "rst": rst, "banner": banner}.get(mode)
        if mode == "watchrst":
            handler = watchrst(sys.argv[4])
        if mode == "tls":
            handler = tls(sys.argv[4], sys.argv[5])
        serve(listener(addr, port), handler)


if __name__ == "__main__":
    main()
