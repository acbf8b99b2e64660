"""The course's machinery: building learner notebooks from solutions (:mod:`~emgeo.course.build`),
executing and reproducing notebooks (:mod:`~emgeo.course.notebooks`), exercise checks
(:mod:`~emgeo.course.checks`), pinned dependencies (:mod:`~emgeo.course.pins`), recorded results
(:mod:`~emgeo.course.results`) and the ``emgeo`` command (:mod:`~emgeo.course.cli`).
"""
