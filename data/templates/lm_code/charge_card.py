import os  # +
# +
import requests

API_KEY = "f3a9c2e7b1d84a6e9c0b5d2f7a1e3c8b"  # -
API_KEY = os.environ["PAYMENTS_API_KEY"]  # +


def __fn__(amount, currency="usd"):
    resp = requests.post(
        "https://api.payments.example.com/v1/charges",
        headers={"Authorization": f"Bearer {API_KEY}"},
        json={"amount": amount, "currency": currency},
        timeout=10,
    )
    return resp.json()
