import tarfile


def __fn__(archive, dest):
    with tarfile.open(archive) as tf:
        tf.extractall(dest)  # -
        tf.extractall(dest, filter="data")  # +
    return dest
