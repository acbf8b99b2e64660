"""Grading course notebooks: the library behind ``emgeo grade`` (:mod:`emgeo.course.grade`).

- :mod:`~emgeo.course.grading.exercises`: a notebook's exercises, their nbgrader metadata, and
  putting the course's check cells back into a submission;
- :mod:`~emgeo.course.grading.kernel`: running a notebook in a fresh kernel, offline and without
  credentials, within a wall-clock budget;
- :mod:`~emgeo.course.grading.outcomes`: the statuses, and what a check cell's outputs say;
- :mod:`~emgeo.course.grading.submissions`: grading one notebook, and every one under a folder;
- :mod:`~emgeo.course.grading.gradebook`: the gradebook as CSV and as HTML (a Jinja2 template).
"""
