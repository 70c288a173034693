"""SMILES BERT: transformers' own BERT as a masked language model over atom-level SMILES tokens.

Nothing of BERT is re-implemented here. These classes only bind ``BertModel``/``BertForMaskedLM`` to
``SMILESBERTMLMConfig`` (so the Auto classes and ``pipeline("fill-mask")`` find them under the
``hf_mae_smiles_bert`` model type) and make the loss right under gradient accumulation:

    input_ids (B, L)  [CLS] atoms... [SEP] [PAD]..., some atoms replaced by [MASK] or a random token
      -> BertModel -> hidden states (B, L, H)
      -> MLM head (tied to the token embeddings) -> logits (B, L, V)
      -> loss: cross-entropy summed over labelled positions (labels != -100), divided by
               ``num_items_in_batch`` (labelled tokens in the whole accumulated batch, all processes)
               when Trainer gives it, else by the labelled tokens of this batch.

Stock ``BertForMaskedLM`` averages per micro-batch while taking ``**kwargs``; Trainer then assumes the model
normalises by ``num_items_in_batch`` and does not divide by the accumulation steps, so its loss and
gradients come out ``gradient_accumulation_steps`` times too large (and x processes under DDP).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.modeling_outputs import MaskedLMOutput
from transformers.utils import can_return_tuple
from transformers.models.bert.modeling_bert import BertForMaskedLM, BertModel, BertPreTrainedModel

from .configuration_smiles_bert import SMILESBERTMLMConfig
from .heads import SequenceClassifierMixin, classification_output
from .serialization import HubCheckpointMixin

__all__ = ["SMILESBERTPreTrainedModel", "SMILESBERTModel", "SMILESBERTForMaskedLM", "masked_lm_loss",
           "smiles_embedding", "SMILESBERTForSequenceClassification"]


def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor,
                   num_items_in_batch: torch.Tensor | int | None = None) -> torch.Tensor:
    """Cross-entropy over labelled positions: summed, divided by ``num_items_in_batch`` or the local count.

    ``logits`` (B, L, V), ``labels`` (B, L) with -100 where nothing is predicted. With ``num_items_in_batch``
    (the labelled tokens of every micro-batch of one optimizer step, as Trainer counts them) the micro-batch
    losses add up to the mean over the whole step, whatever the split.

    Example:
        >>> import torch
        >>> logits, labels = torch.zeros(1, 3, 5), torch.tensor([[-100, 2, -100]])
        >>> round(masked_lm_loss(logits, labels).item(), 4)  # log(5): uniform over 5 tokens
        1.6094
    """
    total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                            ignore_index=-100, reduction="sum")
    if num_items_in_batch is None:
        num_items_in_batch = labels.ne(-100).sum()
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    # clamp: a batch where no token was selected gives 0, not NaN
    return total / (num_items_in_batch.clamp(min=1) if torch.is_tensor(num_items_in_batch) else max(num_items_in_batch, 1))


def smiles_embedding(last_hidden_state: torch.Tensor, atom_mask: torch.Tensor) -> torch.Tensor:
    """A molecule's embedding: the mean of the encoder's last hidden states over its atom tokens (no
    [CLS], [SEP] or padding). last_hidden_state (B, L, H), atom_mask (B, L) bool -> (B, H) float32.

    Example:
        >>> import torch
        >>> smiles_embedding(torch.arange(6.0).view(1, 3, 2), torch.tensor([[False, True, True]])).tolist()
        [[3.0, 4.0]]
    """
    weights = atom_mask.to(last_hidden_state.device, torch.float32)[..., None]          # (B, L, 1)
    return (last_hidden_state.float() * weights).sum(1) / weights.sum(1).clamp(min=1)   # (B, H)


class SMILESBERTPreTrainedModel(HubCheckpointMixin, BertPreTrainedModel):
    """BERT's weight initialisation and attention backends, bound to ``SMILESBERTMLMConfig``; saving and
    loading as every hf_mae model (``HubCheckpointMixin``: full ``auto_map``, pickled weights refused)."""

    config_class = SMILESBERTMLMConfig
    config: SMILESBERTMLMConfig
    base_model_prefix = "bert"

    def get_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                     special_tokens_mask: torch.Tensor | None = None, **encoder_inputs) -> torch.Tensor:
        """Molecule embeddings (B, H) (``smiles_embedding``), what ``extract_features`` returns for SMILES.

        Atom tokens are the attended ones that are not special; without ``special_tokens_mask`` the first and
        last attended tokens of each row are taken as [CLS] and [SEP] (the bundled tokenizer's template).
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        attended = attention_mask.bool()
        if special_tokens_mask is not None:
            atoms = attended & ~special_tokens_mask.bool()
        else:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :]
            last = attended.sum(dim=1, keepdim=True) - 1
            atoms = attended & (positions > 0) & (positions < last)
        hidden = self.base_model(input_ids=input_ids, attention_mask=attention_mask, **encoder_inputs).last_hidden_state
        return smiles_embedding(hidden, atoms)


class SMILESBERTModel(SMILESBERTPreTrainedModel, BertModel):
    """The encoder alone: ``last_hidden_state`` (B, L, H) per token, no pooler.

    ``AutoModel.from_pretrained`` of a masked-LM checkpoint gives this class with the trained encoder.

    Example:
        >>> import torch
        >>> from hf_mae import SMILESBERTMLMConfig, SMILESBERTModel
        >>> config = SMILESBERTMLMConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        ...                              intermediate_size=64)
        >>> SMILESBERTModel(config)(torch.tensor([[101, 1, 1, 102]])).last_hidden_state.shape
        torch.Size([1, 4, 32])
    """

    def __init__(self, config: SMILESBERTMLMConfig, add_pooling_layer: bool = False):
        # No pooler by default: masked-LM pretraining never trains it, so it would load as random weights.
        super().__init__(config, add_pooling_layer=add_pooling_layer)


class SMILESBERTForMaskedLM(SMILESBERTPreTrainedModel, BertForMaskedLM):
    """``BertForMaskedLM`` with a loss that is right under gradient accumulation and several processes.

    Example:
        >>> import torch
        >>> from hf_mae import SMILESBERTMLMConfig, SMILESBERTForMaskedLM
        >>> config = SMILESBERTMLMConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        ...                              intermediate_size=64)
        >>> model = SMILESBERTForMaskedLM(config)
        >>> input_ids = torch.tensor([[101, 1, 103, 1, 102]])
        >>> labels = torch.tensor([[-100, -100, 1, -100, -100]])
        >>> out = model(input_ids=input_ids, labels=labels)
        >>> out.logits.shape, out.loss.ndim
        (torch.Size([1, 5, 1000]), 0)
    """

    # The forward takes ``num_items_in_batch`` and normalises by it: Trainer must not divide again.
    accepts_loss_kwargs = True

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        **kwargs,
    ) -> MaskedLMOutput:
        r"""``input_ids`` (B, L) -> ``logits`` (B, L, vocab_size); with ``labels`` (B, L, -100 = not predicted)
        also ``loss`` (see ``masked_lm_loss``). ``return_dict=False`` (argument or config) gives a tuple."""
        # BERT's own result as a ModelOutput whatever the config says; our decorator makes the tuple if asked.
        outputs = super().forward(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                                  position_ids=position_ids, inputs_embeds=inputs_embeds, return_dict=True, **kwargs)
        loss = None
        if labels is not None:
            loss = masked_lm_loss(outputs.logits, labels, num_items_in_batch)
        return MaskedLMOutput(loss=loss, logits=outputs.logits, hidden_states=outputs.hidden_states,
                              attentions=outputs.attentions)


class SMILESBERTForSequenceClassification(SequenceClassifierMixin, SMILESBERTPreTrainedModel):
    """BERT over SMILES tokens with a regression/classification head (``hf_mae.models.heads``).

    The head reads the [CLS] token's last hidden state (``classifier_pooling="cls"``, as
    ``BertForSequenceClassification`` minus its pooler, which masked-LM pretraining never trains) or the mean
    over attended tokens (``"mean"``). ``from_pretrained`` of a ``SMILESBERTForMaskedLM`` run (``bert.*``) or
    of a ``SMILESBERTModel`` (prefix added) loads the encoder and initialises only ``classifier.*``; the MLM
    head's weights (``cls.*``) are not used.

    Example:
        >>> import torch
        >>> from hf_mae import SMILESBERTMLMConfig, SMILESBERTForSequenceClassification
        >>> config = SMILESBERTMLMConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        ...                              intermediate_size=64, num_labels=2)
        >>> out = SMILESBERTForSequenceClassification(config)(torch.tensor([[101, 7, 8, 102]]), labels=torch.tensor([1]))
        >>> tuple(out.logits.shape), config.problem_type
        ((1, 2), 'single_label_classification')
    """

    _keys_to_ignore_on_load_unexpected = [r"^cls\."]   # the masked-LM head has no use here

    def __init__(self, config: SMILESBERTMLMConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.build_head(config.hidden_size)
        self.post_init()

    @can_return_tuple
    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, output_attentions: bool | None = None):
        """input_ids (B, L) [+ attention_mask (B, L), 1 = token] -> ``SequenceClassifierOutput``: ``logits``
        (B, num_labels) and, with ``labels``, the mean ``loss`` of ``config.problem_type``; BERT's hidden
        states and attentions when asked for; ``return_dict=False`` returns a tuple."""
        encoded = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                            # None -> the config's value; a list of layer indices passes through to BERT
                            output_hidden_states=self.config.output_hidden_states if output_hidden_states is None
                            else output_hidden_states,
                            output_attentions=self.config.output_attentions if output_attentions is None
                            else output_attentions,
                            return_dict=True)
        logits = self.classifier(encoded.last_hidden_state, attention_mask)                # (B, num_labels)
        return classification_output(logits, labels, self.config, encoded.hidden_states, encoded.attentions)
