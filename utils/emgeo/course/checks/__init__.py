"""Exercise checks: ``check_<exercise>(fn)`` tests a learner's function against the reference.

Each check tests shapes first, then values on randomized inputs, and when the answer is wrong it
compares it with the results of common mistakes to say which one was likely made. A passing check
prints one line; a failing one raises :class:`CheckFailed` with the diagnosis, and a last line
that goes on with the course's own version of the exercise (:func:`reference`).

The learner's function, the reference and every mistake each run on their own copies of the
inputs, so a correct answer computed in place (``x -= b_dec``) passes, and no function can change
what another one sees.

One module per notebook (``nb00`` ... ``nb09``) holds its checks; :mod:`.core` the machinery they
share. tests/course/test_checks_meta.py, with the cases of tests/check_cases/, proves every check
passes the reference and correct alternatives (in place, other formulations), rejects the
generated stub, and names the mistake of each planted bug.
"""

from __future__ import annotations

from emgeo.course.checks.core import Mistake, all_checks, reference
from emgeo.course.checks.nb00 import check_cosine_similarity
from emgeo.course.checks.nb01 import (
    check_feature_dimensionality,
    check_generate_batch,
    check_importance_loss,
    check_toy_forward,
    check_toy_model,
    check_train_toy,
)
from emgeo.course.checks.nb02 import check_measured_drag, check_predicted_drag
from emgeo.course.checks.nb03 import (
    check_evaluate_sae,
    check_sae_encode,
    check_sae_loss,
    check_train_sae_loop,
)
from emgeo.course.checks.nb04 import (
    check_answer_mask,
    check_finetune_step,
    check_misaligned_rate,
)
from emgeo.course.checks.nb05 import (
    check_answer_mean,
    check_sample_features,
    check_top_features,
    check_trace_layer,
)
from emgeo.course.checks.nb06 import (
    check_permutation_test,
    check_proximity_to_set,
    check_readout_difference,
)
from emgeo.course.checks.nb07 import (
    check_ablated_scores,
    check_geometric_scores,
    check_keep_mask,
    check_keyword_scores,
    check_paired_reduction,
)
from emgeo.course.checks.nb08 import check_contrast, check_mean_answer_logprob, check_peft_config
from emgeo.course.checks.nb09 import (
    check_auroc,
    check_auroc_interval,
    check_caught_at_budget,
    check_concept_ablation_edit,
)
from emgeo.errors import CheckFailed

__all__ = [
    "CheckFailed",
    "Mistake",
    "all_checks",
    "reference",
    "check_ablated_scores",
    "check_answer_mask",
    "check_auroc",
    "check_auroc_interval",
    "check_caught_at_budget",
    "check_concept_ablation_edit",
    "check_answer_mean",
    "check_contrast",
    "check_cosine_similarity",
    "check_evaluate_sae",
    "check_feature_dimensionality",
    "check_finetune_step",
    "check_generate_batch",
    "check_geometric_scores",
    "check_importance_loss",
    "check_keep_mask",
    "check_keyword_scores",
    "check_mean_answer_logprob",
    "check_measured_drag",
    "check_misaligned_rate",
    "check_paired_reduction",
    "check_peft_config",
    "check_permutation_test",
    "check_predicted_drag",
    "check_proximity_to_set",
    "check_readout_difference",
    "check_sae_encode",
    "check_sae_loss",
    "check_sample_features",
    "check_toy_forward",
    "check_toy_model",
    "check_train_sae_loop",
    "check_top_features",
    "check_trace_layer",
    "check_train_toy",
]
