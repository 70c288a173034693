"""Former home of the protein models, kept so that old import paths work.

The models now live one per file: ``modeling_protein_mae_v2`` (V2), ``modeling_protein_mae_v5`` (V5),
``modeling_protein_interaction`` (the pair head); residue -> patch pooling is in ``pooling``.
"""

from .modeling_protein_base import ProteinMAEPreTrainedModel, check_residue_inputs
from .modeling_protein_interaction import (
    ProteinInteractionForSequenceClassification,
    ProteinInteractionModel,
    ProteinInteractionOutput,
    V2ToV5Adapter,
)
from .modeling_protein_mae_v2 import (
    ProteinMAEV2ForPreTraining,
    ProteinMAEV2ForPreTrainingOutput,
    ProteinMAEV2Model,
    ProteinMAEV2ModelOutput,
    TransformerMAE,
)
from .modeling_protein_mae_v5 import (
    MAEEncoder,
    PatchEmbedding,
    ProteinMAEV5Decoder,
    ProteinMAEV5ForPreTraining,
    ProteinMAEV5ForPreTrainingOutput,
    ProteinMAEV5Model,
    ProteinMAEV5ModelOutput,
)
from .pooling import masked_mean, pool_patches

__all__ = [
    "ProteinMAEV2Model", "TransformerMAE", "ProteinMAEV2ForPreTraining", "ProteinMAEV5Model", "MAEEncoder",
    "PatchEmbedding", "ProteinMAEV5Decoder", "ProteinMAEV5ForPreTraining", "V2ToV5Adapter", "ProteinInteractionModel",
    "ProteinInteractionForSequenceClassification", "ProteinMAEPreTrainedModel", "pool_patches", "masked_mean",
    "check_residue_inputs", "ProteinMAEV2ModelOutput", "ProteinMAEV2ForPreTrainingOutput", "ProteinMAEV5ModelOutput",
    "ProteinMAEV5ForPreTrainingOutput", "ProteinInteractionOutput",
]
