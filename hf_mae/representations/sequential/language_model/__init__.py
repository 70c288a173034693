"""The masked-language-model API for SMILES under the module path of its original documentation.

The implementation lives in ``hf_mae.training.smiles_mlm`` (``ChemBERTaMLM``, ``SmilesMLMFeaturizer``) and
``hf_mae.models`` (``SMILESBERTMLMConfig``); this module only re-exports it, so code written against
``representations.sequential.language_model`` runs unchanged:

    >>> from hf_mae.representations.sequential.language_model import SMILESBERTMLMConfig
    >>> SMILESBERTMLMConfig().vocab_size
    1000
"""

from ....models import SMILESBERTMLMConfig
from ....training.smiles_mlm import CHEMBERTA_MODELS, ChemBERTaMLM, SmilesMLMFeaturizer

__all__ = ["SMILESBERTMLMConfig", "ChemBERTaMLM", "SmilesMLMFeaturizer", "CHEMBERTA_MODELS"]
