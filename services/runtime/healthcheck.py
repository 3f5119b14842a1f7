"""Container health check: ask the standard gRPC health service, exit 0 only on SERVING.

    python -m services.runtime.healthcheck [--address HOST:PORT] [--service NAME] [--timeout S]

Every image's HEALTHCHECK runs this (grpc_health_probe is not on any registry we can
install from, and grpcio + grpcio-health-checking are runtime dependencies already). The
address defaults to $MILO_HEALTHCHECK_ADDRESS, which each image sets to its own port; an
empty --service asks about the server as a whole. Health RPCs are exempt from the API key.

Exit status: 0 SERVING; 1 anything else (NOT_SERVING while loading or draining, unknown
service, unreachable, timed out). Docker reserves 2, so it is never used. The one line
printed says why; Docker keeps it in `docker inspect --format '{{json .State.Health}}'`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ENV_ADDRESS = "MILO_HEALTHCHECK_ADDRESS"
DEFAULT_ADDRESS = "127.0.0.1:50050"
HEALTHY, UNHEALTHY = 0, 1


def check(address: str, service: str = "", timeout: float = 3.0) -> tuple[int, str]:
    """(exit status, reason) for one Check call against `address`."""
    request = health_pb2.HealthCheckRequest(service=service)
    what = f"{address} service {service!r}" if service else address
    try:
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(request, timeout=timeout)
    except grpc.RpcError as exc:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        name = code.name if code is not None else "ERROR"
        detail = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        return UNHEALTHY, f"{what}: {name}: {detail}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    code = HEALTHY if reply.status == health_pb2.HealthCheckResponse.SERVING else UNHEALTHY
    return code, f"{what}: {status}"


def build_parser() -> argparse.ArgumentParser:
    """The parser: --address (host:port), --service (name to ask about), --timeout (seconds)."""
    parser = argparse.ArgumentParser(
        prog="python -m services.runtime.healthcheck",
        description="Exit 0 if the gRPC health service says SERVING, else 1.",
    )
    parser.add_argument(
        "--address",
        default=os.environ.get(ENV_ADDRESS) or DEFAULT_ADDRESS,
        help=f"host:port of the service (default ${ENV_ADDRESS}, else {DEFAULT_ADDRESS})",
    )
    parser.add_argument("--service", default="", help="service name to ask about ('' = server)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for a reply")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Ask the health service once; print why, return 0 if SERVING, else 1."""
    args = build_parser().parse_args(argv)
    status, reason = check(args.address, args.service, args.timeout)
    print(reason, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
