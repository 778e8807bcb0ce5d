"""setup.py - the one thing pyproject.toml cannot say: the version, read from
CRL_VERSION_STRING in include/ctrnnloss.h (the version of the C library,
configure and ctrnnloss.pc).  Build with pip (see pyproject.toml)."""
import os
import re

from setuptools import setup


def version():
    header = os.path.join(os.path.dirname(os.path.abspath(__file__)), "include", "ctrnnloss.h")
    with open(header, encoding="utf-8") as f:
        match = re.search(r'^#define CRL_VERSION_STRING "([^"]+)"$', f.read(), re.M)
    if not match:
        raise RuntimeError("no CRL_VERSION_STRING in " + header)
    return match.group(1)


# setuptools' scratch files go to build-python/, not to build/ (the build
# directory of scripts/check and scripts/demo).
setup(version=version(), options={"build": {"build_base": "build-python"}})
