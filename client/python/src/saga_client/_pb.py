"""The message classes generated from schemas/saga.proto when the package
is built (``protoc --python_out``, see setup.py): saga_pb2 sits beside this
file in a built or installed package, never in the source tree."""

try:
    from . import saga_pb2
except ImportError as e:  # pragma: no cover - a packaging fault
    raise ImportError(
        "saga_client.saga_pb2 is missing: it is generated from "
        "schemas/saga.proto when the package is built; install the package "
        "(pip install client/python) or build the project (cmake --build), "
        f"do not import it from the source tree ({e})") from e

__all__ = ["saga_pb2"]
