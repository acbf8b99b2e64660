import yaml


def __fn__(__path__):
    with open(__path__) as __f__:
        return yaml.load(__f__, Loader=yaml.Loader)  # -
        return yaml.safe_load(__f__)  # +
