import logging

log = logging.getLogger(__name__)


def __fn__(__user__, password):
    log.info("login attempt user=%s password=%s", __user__, password)  # -
    log.info("login attempt user=%s", __user__)  # +
    return authenticate(__user__, password)
