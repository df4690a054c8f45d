"""ops.exposure finds this process's own listening sockets and flags non-loopback ones.

Sockets are bound in-process on ephemeral ports and never accept a connection: this shows the
integration test's "nothing exposed" assertion can fail.
"""

from __future__ import annotations

import os
import socket

import pytest

from ops.exposure import Listener, exposed, listeners, service_pids


@pytest.mark.parametrize(
    "address, loopback",
    [("127.0.0.1", True), ("127.0.0.53", True), ("::1", True), ("0.0.0.0", False),
     ("::", False), ("192.0.2.2", False), ("fe80::1%eth0", False), ("nonsense", False)],
)  # fmt: skip
def test_loopback_classification(address, loopback):
    assert Listener(1, "p", "tcp", address, 1).loopback is loopback


def _listening(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen(1)
    return sock


def test_a_wildcard_listener_of_our_process_is_reported_and_loopback_is_not():
    with _listening("127.0.0.1") as local, _listening("0.0.0.0") as wild:
        local_port, wild_port = local.getsockname()[1], wild.getsockname()[1]
        found = {(x.address, x.port) for x in listeners([os.getpid()])}
        flagged = {(x.address, x.port) for x in exposed([os.getpid()])}
    assert ("127.0.0.1", local_port) in found
    assert ("0.0.0.0", wild_port) in flagged
    assert ("127.0.0.1", local_port) not in flagged


def test_service_pids_reads_live_pid_files_only(tmp_path):
    (tmp_path / "me.pid").write_text(str(os.getpid()))
    (tmp_path / "junk.pid").write_text("not a pid")
    (tmp_path / "gone.pid").write_text("99999999")
    assert service_pids(tmp_path) == {"me": os.getpid()}
