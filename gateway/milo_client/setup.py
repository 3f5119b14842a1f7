"""Build step of `milo-client`: generate the wire stubs from the repository's protos/ into
./gen, then package them (`milo.*`) with the client (`milo.client`, from ./client)."""

import runpy
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
GEN = HERE / "gen"
runpy.run_path(str(HERE.parents[1] / "protos" / "generate.py"))["generate"](GEN)

setup(
    packages=[
        "milo",
        *("milo." + p for p in find_packages(where=str(GEN / "milo"))),
        "milo.client",
    ],
    package_dir={"milo": "gen/milo", "milo.client": "client"},
    package_data={"milo": ["**/*.pyi"]},
)
