"""Build step: generate the wire-API stubs from protos/ before packaging.

All metadata is in pyproject.toml; this file only runs the generator and lists the
generated packages (they do not exist until it has run).
"""

import runpy
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
runpy.run_path(str(ROOT / "protos" / "generate.py"))["generate"]()

generated = ["milo." + p for p in find_packages(where=str(ROOT / "protos" / "gen" / "milo"))]
setup(
    packages=[
        *find_packages(
            include=["services", "services.*", "gateway", "gateway.*"],
            exclude=["gateway.milo_client", "gateway.milo_client.*"],
        ),
        "milo",
        *generated,
        "milo.client",  # its own distribution too: gateway/milo_client
    ],
    package_data={
        "milo": ["**/*.pyi"],
        "services.models": ["data/*.txt"],
        "gateway": ["http/web/*", "http/web/**/*"],
    },
)
