from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/orders")
def __fn__():
    customer = request.args.get("customer", "")
    __conn__ = get_db()
    __rows__ = __conn__.execute(f"SELECT id, total FROM orders WHERE customer = '{customer}'")  # -
    __rows__ = __conn__.execute("SELECT id, total FROM orders WHERE customer = ?", (customer,))  # +
    return jsonify([dict(row) for row in __rows__.fetchall()])
