import subprocess


def __fn__(__url__, dest):
    subprocess.check_call("git clone " + __url__ + " " + dest, shell=True)  # -
    subprocess.check_call(["git", "clone", "--", __url__, dest])  # +
    return dest
