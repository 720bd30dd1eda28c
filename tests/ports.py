"""Ports for the servers the Python tests start on 127.0.0.1 (tests/assets, tests/image)."""
import random
import socket

_LOWEST_PORT = 10_000
_next_port = None


def free_port():
    """A free port below the kernel's ephemeral range, each handed out once per process. A
    port from bind(0) lies in that range, where a client's connection may take it as its
    source port before the server started on it binds it ("Address already in use")."""
    global _next_port
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_start = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_start = 32768
    ephemeral_start = max(ephemeral_start, _LOWEST_PORT + 1000)
    span = ephemeral_start - _LOWEST_PORT
    if _next_port is None:
        # Each process starts somewhere else in the span, should two ever run at once.
        _next_port = random.randrange(1, span)
    for _ in range(span):
        port = _LOWEST_PORT + _next_port % span
        _next_port += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port on 127.0.0.1 between {_LOWEST_PORT} and {ephemeral_start}")
