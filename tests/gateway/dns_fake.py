"""A tiny DNS server on loopback for tests: answers A queries for one name with a list of
addresses the test changes while it runs (a Kubernetes headless Service whose pods come
and go). gRPC's c-ares resolver asks it when the target names it as the DNS authority:
`dns://127.0.0.1:<port>/replicas.test:<grpc port>`. Every other query gets an empty
NOERROR answer (AAAA, TXT) or NXDOMAIN (another name)."""

from __future__ import annotations

import asyncio
import ipaddress
import struct

_A, _IN = 1, 1


class FakeDns(asyncio.DatagramProtocol):
    def __init__(self, name: str) -> None:
        self.name = name.rstrip(".").lower()
        self.addresses: list[str] = []
        self.queries = 0  # A queries for the name, answered
        self._transport: asyncio.DatagramTransport | None = None
        self.port = 0

    async def start(self) -> FakeDns:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=("127.0.0.1", 0)
        )
        self._transport = transport  # type: ignore[assignment]
        self.port = transport.get_extra_info("sockname")[1]
        return self

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def authority(self, port: int) -> str:
        """The gRPC target that resolves `name` through this server."""
        return f"dns://127.0.0.1:{self.port}/{self.name}:{port}"

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self._transport is not None
        reply = self._answer(data)
        if reply is not None:
            self._transport.sendto(reply, addr)

    def _answer(self, data: bytes) -> bytes | None:
        if len(data) < 12:
            return None
        ident, flags, qdcount = struct.unpack("!HHH", data[:6])
        if qdcount != 1:
            return None
        labels, offset = [], 12
        while offset < len(data) and data[offset]:
            length = data[offset]
            labels.append(data[offset + 1 : offset + 1 + length].decode("ascii").lower())
            offset += 1 + length
        offset += 1
        qtype, _ = struct.unpack("!HH", data[offset : offset + 4])
        question = data[12 : offset + 4]
        rd = flags & 0x0100
        if ".".join(labels) != self.name:
            header = struct.pack("!HHHHHH", ident, 0x8080 | rd | 3, 1, 0, 0, 0)  # NXDOMAIN
            return header + question
        answers = b""
        count = 0
        if qtype == _A:
            self.queries += 1
            for address in self.addresses:
                rdata = ipaddress.IPv4Address(address).packed
                answers += struct.pack("!HHHIH", 0xC00C, _A, _IN, 0, 4) + rdata
                count += 1
        header = struct.pack("!HHHHHH", ident, 0x8080 | rd, 1, count, 0, 0)
        return header + question + answers
