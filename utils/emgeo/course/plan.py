"""What each notebook runs in each profile: shown by ``emgeo doctor`` (and so by notebook 00).

A notebook's heavy parts have a larger twin in the gpu and remote profiles; this says, in one line
per notebook and profile, which one a learner's machine will run.
"""

from __future__ import annotations

from emgeo.config import PROFILES

NOTEBOOK_PLAN: dict[str, dict[str, str]] = {
    "00_orientation": {p: "environment check and a first exercise" for p in PROFILES},
    "01_toy_superposition": {p: "toy models of superposition, trained here" for p in PROFILES},
    "02_neighbor_feature_drag": {p: "drag derived and measured on toy models" for p in PROFILES},
    "03_sparse_autoencoders": {
        "cpu": "SAE from scratch on the toy model; SAELens on SmolLM2-135M (CPU stand-in)",
        "gpu": "as cpu, plus Gemma Scope loaded with SAELens",
        "remote": "as cpu, plus Llama Scope loaded with SAELens",
    },
    "04_emergent_misalignment_organism": {
        p: "the course's EM model organism, fine-tuned on CPU" for p in PROFILES
    },
    "05_feature_identification": {
        "cpu": "nnsight tracing on the organism and on SmolLM2-135M",
        "gpu": "Gemma-2-2B + Gemma Scope on the local GPU",
        "remote": "Llama-3.1-8B on NDIF (remote=True) + Llama Scope",
    },
    "06_feature_geometry": {
        "cpu": "decoder-cosine statistics on the organism and SmolLM2-135M",
        "gpu": "the same on Gemma-2-2B + Gemma Scope",
        "remote": "the same on Llama-3.1-8B + Llama Scope",
    },
    "07_geometric_filter": {
        "cpu": "the filter and its baselines, evaluated on the organism",
        "gpu": "the same on Gemma-2-2B with LoRA fine-tuning and a judge",
        "remote": "as cpu: the filter evaluated on the organism",
    },
    "08_em_in_a_real_lm": {
        p: "SmolLM2-135M on CPU: a judge-free EM margin, LoRA fine-tunes on code" for p in PROFILES
    },
    "09_audit": {
        "cpu": "emgeo audit validated on the organism; SmolLM2 + the course SAE on code chats",
        "gpu": "as cpu, the real-model audit on Gemma-2-2B + Gemma Scope",
        "remote": "as cpu, the real-model audit on Llama-3.1-8B via NDIF + Llama Scope",
    },
}
