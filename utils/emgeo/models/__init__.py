"""Everything that talks to real models and outside services: loading language models in each
profile (:mod:`~emgeo.models.lm`), nnsight tracing (:mod:`~emgeo.models.tracing`), NDIF
(:mod:`~emgeo.models.ndif`), SAELens SAEs (:mod:`~emgeo.models.saes`), LoRA fine-tuning
(:mod:`~emgeo.models.lora`), the judge (:mod:`~emgeo.models.judge`), public datasets
(:mod:`~emgeo.models.public_data`), text corpora (:mod:`~emgeo.models.corpus`) and the pipeline
on a real LM per profile (:mod:`~emgeo.models.pipeline`).

Importing this package imports none of them: each is imported by name.
"""
