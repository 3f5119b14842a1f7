"""A small test service on the shared runtime: the Translator API over a toy engine that
reverses words. Its `load` waits on a gate so tests can watch health before and after
loading; `Translate` of the text "hold" waits until `release` is set, so tests can fill the
admission queue without timing guesses. Run as a script, it serves until SIGTERM.
"""

from __future__ import annotations

import asyncio
import sys
import threading

import grpc
from pydantic_settings import SettingsConfigDict

from milo.translate.v1 import translate_pb2, translate_pb2_grpc
from services.runtime.config import ServiceSettings
from services.runtime.errors import InvalidArgument
from services.runtime.server import run


class ToySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MILO_TOY_")
    hold_s: float = 0.0
    load_s: float = 0.0  # how long load() takes (waits on the gate) when run as a script


class ToyService(translate_pb2_grpc.TranslatorServicer):
    name = "toy"
    service_names = (translate_pb2.DESCRIPTOR.services_by_name["Translator"].full_name,)
    model_id = "toy-reverser"
    device = "cpu"

    def __init__(self, hold_s: float = 0.0, load_s: float = 60.0) -> None:
        self.load_gate = threading.Event()
        self.load_s = load_s
        self.release = asyncio.Event()
        self.entered = 0
        self.hold_s = hold_s
        self.closed = False

    def register(self, server: grpc.aio.Server) -> None:
        translate_pb2_grpc.add_TranslatorServicer_to_server(self, server)

    def load(self) -> None:
        self.load_gate.wait(timeout=self.load_s)

    def close(self) -> None:
        self.closed = True

    async def Describe(self, request, context):
        return translate_pb2.DescribeResponse(model_id=self.model_id)

    async def Translate(self, request, context):
        if not request.texts:
            raise InvalidArgument("texts is empty: send at least one text")
        self.entered += 1
        if request.texts[0] == "hold":
            await self.release.wait()
        if request.texts[0] == "crash":
            raise RuntimeError("secret internal detail")
        if self.hold_s:
            await asyncio.sleep(self.hold_s)
        out = [translate_pb2.Translation(text=" ".join(t.split()[::-1])) for t in request.texts]
        return translate_pb2.TranslateResponse(translations=out)


def main() -> int:
    def make(settings: ToySettings) -> ToyService:
        service = ToyService(settings.hold_s, settings.load_s)
        if not settings.load_s:
            service.load_gate.set()
        return service

    return run(make, ToySettings, sys.argv[1:], "toy")


if __name__ == "__main__":
    sys.exit(main())
