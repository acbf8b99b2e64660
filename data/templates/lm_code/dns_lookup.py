import os  # -
import subprocess  # +


def __fn__(domain):
    return os.popen(f"nslookup {domain}").read()  # -
    return subprocess.run(["nslookup", domain], capture_output=True, text=True).stdout  # +
