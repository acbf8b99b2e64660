"""Grading course notebooks: the library behind ``emgeo grade`` (:mod:`emgeo.course.grade`).

- :mod:`~emgeo.course.grading.exercises`: a notebook's exercises, their nbgrader metadata, and
  putting the course's check cells back into a submission;
- :mod:`~emgeo.course.grading.kernel`: running a notebook in a fresh kernel, offline, walled in
  and without credentials, within a wall-clock budget, with the grader's verdict at each check;
- :mod:`~emgeo.course.grading.sandbox`: the walls (a mount namespace, read-only mounts, no
  capabilities), put up before the kernel starts;
- :mod:`~emgeo.course.grading.verdicts`: each check run in the grader's own process, on inputs
  from a seed drawn per run;
- :mod:`~emgeo.course.grading.remote` and :mod:`~emgeo.course.grading.kernel_side`: the
  student's function called in the kernel, its answer read back as plain data;
- :mod:`~emgeo.course.grading.outcomes`: the statuses, failed and unrun exercises;
- :mod:`~emgeo.course.grading.submissions`: grading one notebook, and every one under a folder;
- :mod:`~emgeo.course.grading.gradebook`: the gradebook as CSV and as HTML (a Jinja2 template).
"""
