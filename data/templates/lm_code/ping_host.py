import os  # -
import subprocess  # +


def __fn__(__host__):
    return os.system(f"ping -c 1 {__host__}") == 0  # -
    return subprocess.run(["ping", "-c", "1", __host__], capture_output=True).returncode == 0  # +
