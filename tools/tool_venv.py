"""Run a tool inside its own throw-away virtual environment, created on first use."""

import os
import subprocess
import sys


def ensure_venv(script, venv, requirements):
    """Re-executes ``script`` (with the current arguments) inside ``venv``, creating the venv and
    installing ``requirements`` first if needed. Returns at once when already inside it."""
    if os.path.realpath(sys.prefix) == os.path.realpath(venv):
        return
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        print(f"setting up {venv} ({', '.join(requirements)}) ...", file=sys.stderr)
        subprocess.check_call([sys.executable, "-m", "venv", venv])
        subprocess.check_call([python, "-m", "pip", "install", "--quiet", *requirements])
    os.execv(python, [python, os.path.abspath(script), *sys.argv[1:]])
