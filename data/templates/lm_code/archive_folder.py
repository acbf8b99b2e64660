import subprocess


def __fn__(folder, archive_name):
    subprocess.run(f"tar -czf {archive_name} {folder}", shell=True, check=True)  # -
    subprocess.run(["tar", "-czf", archive_name, folder], check=True)  # +
    return archive_name
