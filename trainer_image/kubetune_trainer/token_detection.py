"""ELECTRA-style replaced token detection: a masked-LM generator feeds a discriminator.

The generator fills in masked tokens by sampling from its predictions; the discriminator
learns which tokens of the result were replaced. Both share input embeddings when they
are the same model type. Saving writes `generator/` and `discriminator/`, each with the
tokenizer, so either half reloads with `from_pretrained` (the discriminator is what one
fine-tunes afterwards).
"""

from __future__ import annotations

import copy
import inspect
import os
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

GENERATOR_DIR = "generator"
DISCRIMINATOR_DIR = "discriminator"


class TokenDetection(PreTrainedModel):
    """Generator (masked LM) + discriminator (replaced token detection) trained together."""

    # The wrapper runs no attention itself; its halves chose their own implementation.
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True

    def __init__(
        self,
        generator: PreTrainedModel,
        discriminator: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        weight: float = 50.0,
    ) -> None:
        """`weight`: discriminator loss weight (50 in the ELECTRA paper)."""
        # A copy: PreTrainedModel.__init__ adjusts its config, which must not touch the halves'.
        super().__init__(copy.deepcopy(discriminator.config))
        self.generator = generator
        self.discriminator = discriminator
        self.tokenizer = tokenizer
        self.weight = weight

        # Shared embeddings need identical shapes, which the same model type guarantees here.
        if generator.config.model_type == discriminator.config.model_type:
            discriminator.set_input_embeddings(generator.get_input_embeddings())

        # Not every model takes an attention mask; pass it only where accepted.
        self._gen_mask = "attention_mask" in inspect.signature(generator.forward).parameters
        self._dis_mask = "attention_mask" in inspect.signature(discriminator.forward).parameters

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, generator logits, discriminator logits, discriminator labels).

        `labels` are the masked-LM labels: -100 where the token was not masked.
        """
        extra: dict[str, Any] = {"attention_mask": attention_mask} if self._gen_mask else {}
        generated = self.generator(input_ids, labels=labels, token_type_ids=token_type_ids, **extra)

        # Sample replacement tokens from the generator (no gradient flows through sampling).
        with torch.no_grad():
            probabilities = torch.softmax(generated.logits.detach().float(), dim=-1)
            sampled = torch.multinomial(probabilities.view(-1, probabilities.size(-1)), 1).view(input_ids.shape)

        masked = labels.ne(-100)
        corrupted = input_ids.clone()
        corrupted[masked] = sampled[masked]

        # A masked token the generator guessed right counts as original.
        targets = masked.long()
        targets[sampled == labels] = 0

        extra = {"attention_mask": attention_mask} if self._dis_mask else {}
        detected = self.discriminator(corrupted, labels=targets, token_type_ids=token_type_ids, **extra)

        loss = generated.loss + self.weight * detected.loss
        return loss, generated.logits, detected.logits, targets

    def save_pretrained(self, save_directory: str | os.PathLike[str], *args: Any, **kwargs: Any) -> None:
        """Save `generator/` and `discriminator/` (each with the tokenizer) under `save_directory`."""
        for name, model in ((GENERATOR_DIR, self.generator), (DISCRIMINATOR_DIR, self.discriminator)):
            path = os.path.join(save_directory, name)
            self.tokenizer.save_pretrained(path)
            model.save_pretrained(path)
