"""Stand-in for ansible-test's get-pip bootstrap script.

ansible-test creates each sanity virtual environment without pip and bootstraps it with a
get-pip script downloaded from a host these machines cannot reach; it looks for a cached copy
first. This stand-in does the same job from what is here: ensurepip installs the interpreter's
bundled pip, then `pip install` receives the arguments ansible-test passes (for example
pip==25.2), exactly as get-pip.py would.
"""
import subprocess
import sys

ARGS = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet"] + ARGS)
