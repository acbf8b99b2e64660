import pickle  # -
import json  # +

from flask import request


@app.route("/jobs", methods=["POST"])
def __fn__():
    job = pickle.loads(request.get_data())  # -
    job = json.loads(request.get_data())  # +
    job_queue.put(job)
    return {"status": "queued"}
