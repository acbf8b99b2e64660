"""The experiments that run the notebooks' claims again at scale and write the records the
notebooks read: over independently pretrained organisms (:mod:`~emgeo.experiments.robustness`)
and geometry as the dose of EM (:mod:`~emgeo.experiments.dose`). They build on the science
modules and the models layer; the course's commands call them.

Importing this package imports none of them: each is imported by name.
"""
