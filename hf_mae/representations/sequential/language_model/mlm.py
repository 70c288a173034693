"""MLM training utilities under the documented path ``representations.sequential.language_model.mlm``."""

from ....training.smiles_mlm import (
    check_mask_probabilities,
    encode_smiles_for_mlm,
    make_mlm_trainer,
    masked_lm_metrics,
    mlm_collator,
    mlm_loss_func,
    most_frequent_token,
)

__all__ = ["check_mask_probabilities", "encode_smiles_for_mlm", "make_mlm_trainer", "masked_lm_metrics",
           "mlm_collator", "mlm_loss_func", "most_frequent_token"]
