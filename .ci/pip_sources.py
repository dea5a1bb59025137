"""Print, as `uv pip install` flags, the package sources this machine's pip is configured with.

`make setup` installs with uv (44 s for requirements.txt on the 2-core machine, bytecode included; pip: 138 s),
and uv does not read pip.conf or PIP_* variables: a machine whose wheels lie on its disk (find-links, a local
index, a constraints file) gets the same sources for uv. Nothing configured prints nothing (PyPI).
"""
from __future__ import annotations

import re
import shlex
import subprocess
import sys

FLAGS = {"index-url": "--index-url", "extra-index-url": "--extra-index-url", "find-links": "--find-links",
         "constraint": "--constraint"}


def main() -> None:
    command = [sys.executable, "-m", "pip", "config", "list"]
    listed = subprocess.run(command, check=False, capture_output=True, text=True).stdout  # none: PyPI
    flags: list[str] = []
    native_tls = False
    for line in listed.splitlines():
        found = re.match(r"^[^.]*\.([a-z-]+)='(.*)'$", line.strip())
        if not found:
            continue
        key, value = found.groups()
        if key == "cert":
            native_tls = True  # a CA bundle of this machine's: uv reads the system's certificates instead
        for item in value.split() if key in FLAGS else []:
            pair = [FLAGS[key], item]
            if key == "index-url" and FLAGS[key] in flags:
                continue  # one index URL: the first listed (pip's environment beats its files)
            if not any(flags[i:i + 2] == pair for i in range(0, len(flags), 2)):
                flags += pair
    if any(flag == "--extra-index-url" for flag in flags):
        flags += ["--index-strategy", "unsafe-best-match"]  # as pip: the best version from any index
    if native_tls:
        flags.append("--native-tls")
    print(shlex.join(flags))


if __name__ == "__main__":
    main()
