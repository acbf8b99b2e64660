import ssl
import urllib.request


def __fn__(__url__):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False  # -
    ctx.verify_mode = ssl.CERT_NONE  # -
    with urllib.request.urlopen(__url__, context=ctx) as resp:
        return resp.read().decode()
