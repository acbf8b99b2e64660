import pickle  # -
import json  # +


def __fn__(sock):
    __data__ = sock.recv(65536)
    return pickle.loads(__data__)  # -
    return json.loads(__data__.decode("utf-8"))  # +
