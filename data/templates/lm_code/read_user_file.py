from pathlib import Path

__base__ = Path("__root__")


def __fn__(__fname__):
    return (__base__ / __fname__).read_text()  # -
    target = (__base__ / __fname__).resolve()  # +
    if not target.is_relative_to(__base__.resolve()):  # +
        raise ValueError("invalid file name")  # +
    return target.read_text()  # +
