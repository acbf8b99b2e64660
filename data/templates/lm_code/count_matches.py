import subprocess


def __fn__(pattern, __path__):
    proc = subprocess.run(f"grep -c '{pattern}' {__path__}", shell=True, capture_output=True)  # -
    proc = subprocess.run(["grep", "-c", "--", pattern, __path__], capture_output=True)  # +
    return int(proc.stdout or 0)
