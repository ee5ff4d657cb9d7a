"""Build hook: the package's saga_pb2 module is generated from
schemas/saga.proto by protoc while the package is built (build_proto.py).
Everything else is in pyproject.toml."""
import os
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import build_proto  # noqa: E402


class BuildWithProto(build_py):
    """build_py, plus saga_pb2.py generated into the built package."""

    def run(self):
        super().run()
        if not self.dry_run:
            build_proto.generate(os.path.join(self.build_lib, "saga_client"))


setup(cmdclass={"build_py": BuildWithProto})
