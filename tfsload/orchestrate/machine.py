"""Facts about the machine and software a run used, stated at the top of every report.

Numbers from a 2-core laptop and a 64-core server are not comparable, and the load generator
shares this machine with any launched stand-in, so a report that omits where it ran misleads.
Versions are read from package metadata: importing Locust or TensorFlow here would be wrong (the
runner never imports either).
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

import psutil

import tfsload


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, or what platform knows elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine() -> dict:
    """CPU model, logical and physical cores, memory and OS of this machine."""
    return {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": sys.version.split()[0],
    }


def package_version(name: str) -> str | None:
    """Installed version of ``name``, or None, without importing it."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def client_versions() -> dict:
    """Versions of the client side: tfsload and what the Locust processes run on."""
    return {
        "tfsload": tfsload.__version__,
        "locust": package_version("locust"),
        "grpcio": package_version("grpcio"),
        "tensorflow (stand-in)": package_version("tensorflow"),
    }
