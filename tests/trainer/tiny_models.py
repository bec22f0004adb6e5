"""Tiny local models for tests: random weights from small configs, tokenizers from a written vocab.

Nothing is downloaded. Each builder writes a folder that `AutoConfig`, `AutoTokenizer`
and the `AutoModelFor*` classes load like a hub checkpoint. The runtime tests import
these too (through the `tiny_models` fixture in conftest.py).

Pitfalls handled here (see /work/shared/TESTING.md): the BERT WordPiece tokenizer gets a
TemplateProcessing post-processor or no special tokens are added; GPT-2 and Llama get a
pad token distinct from EOS; T5 gets `$A </s>` and decoder_start_token_id = pad = 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import (
    BertConfig,
    BertForPreTraining,
    ElectraConfig,
    ElectraForPreTraining,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

# Every word the test data uses; anything else becomes the unknown token.
WORDS: tuple[str, ...] = tuple(
    """
    the a an is are was on in at of to and or with my your this that it he she they we i
    cat cats kitten kittens meow meows purr purrs purring whiskers feline
    dog dogs puppy puppies bark barks woof fetch wags tail canine
    sat sits ran runs sleeps sleeping plays playing likes loves chased chases
    mat sofa park garden house yard box bed floor window
    happy sad big small old young good bad very quite really
    red blue green yellow black white orange purple pink brown
    what where who which answer question color colour
    translate english german french
    hello world goodbye thanks yes no one two three four five six seven eight
    eins zwei drei vier hallo welt danke ja nein
    today yesterday tomorrow morning evening night
    . , ? ! :
    """.split()  # noqa: SIM905 - a word list reads better as text
)

BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclass(frozen=True)
class TinyModels:
    """Folders of the tiny models written for a test session."""

    bert: Path  # BertForPreTraining weights (encoder, pooler, MLM head) + WordPiece tokenizer ([CLS] $A [SEP])
    gpt2: Path  # GPT2LMHeadModel, word-level tokenizer, pad != eos
    t5: Path  # T5ForConditionalGeneration, `$A </s>`, decoder start = pad = 0
    llama: Path  # LlamaForCausalLM, pad != eos (for quantize + LoRA)
    electra: Path  # ElectraForPreTraining + BERT tokenizer (token-detection)


def _bert_tokenizer(max_length: int) -> PreTrainedTokenizerFast:
    vocab = {token: index for index, token in enumerate((*BERT_SPECIALS, *WORDS))}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_length,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],  # as BERT's own tokenizer
    )


def _word_tokenizer(
    specials: tuple[str, ...], max_length: int, post: str | None = None, **named: str
) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer; `post` is a TemplateProcessing single template."""
    vocab = {token: index for index, token in enumerate((*specials, *WORDS))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=named["unk_token"]))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()  # joins words with spaces
    if post:
        used = [part for part in post.split() if part in vocab]
        tok.post_processor = processors.TemplateProcessing(
            single=post, special_tokens=[(token, vocab[token]) for token in used]
        )
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=max_length, **named)


def build_bert(path: Path, max_length: int = 128) -> Path:
    """A 2-layer BERT (hidden 32) saved with pooler and pre-training heads, like bert-base-uncased.

    The pooler matters: a classifier built on a checkpoint without one gets a randomly
    initialised pooler, and a LoRA adapter trained on it would not reload to the same model.
    """
    torch.manual_seed(0)
    tokenizer = _bert_tokenizer(max_length)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_length,
        pad_token_id=tokenizer.pad_token_id,
    )
    BertForPreTraining(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_gpt2(path: Path, max_length: int = 128) -> Path:
    """A 2-layer GPT-2 with a pad token distinct from EOS (so the LM keeps learning EOS)."""
    torch.manual_seed(0)
    tokenizer = _word_tokenizer(
        ("<pad>", "<|endoftext|>", "<unk>"),
        max_length,
        pad_token="<pad>",
        eos_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        unk_token="<unk>",
    )
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_llama(path: Path, max_length: int = 128) -> Path:
    """A 2-layer Llama (hidden 64: bitsandbytes 4-bit blocks need a few dozen values)."""
    torch.manual_seed(0)
    tokenizer = _word_tokenizer(
        ("<pad>", "<s>", "</s>", "<unk>"),
        max_length,
        post="<s> $A",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
    )
    return save_tiny_llama(path, tokenizer, max_length)


def save_tiny_llama(path: Path, tokenizer: PreTrainedTokenizerFast, max_length: int) -> Path:
    """A 2-layer Llama (hidden 64) sized for `tokenizer`, saved with it under `path`."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_t5(path: Path, max_length: int = 64) -> Path:
    """A 2-layer T5 (d_model 32) with `$A </s>` and decoder start = pad = 0."""
    torch.manual_seed(0)
    tokenizer = _word_tokenizer(
        ("<pad>", "</s>", "<unk>"),
        max_length,
        post="$A </s>",
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
    )
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_ff=64,
        d_kv=16,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=2,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    T5ForConditionalGeneration(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_electra(path: Path, max_length: int = 128) -> Path:
    """An ELECTRA discriminator checkpoint with the tiny BERT tokenizer (token-detection)."""
    torch.manual_seed(0)
    tokenizer = _bert_tokenizer(max_length)
    config = ElectraConfig(
        vocab_size=len(tokenizer),
        embedding_size=32,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_length,
        pad_token_id=tokenizer.pad_token_id,
    )
    ElectraForPreTraining(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_all(root: Path) -> TinyModels:
    """Write every tiny model under `root` and return their folders."""
    return TinyModels(
        bert=build_bert(root / "bert"),
        gpt2=build_gpt2(root / "gpt2"),
        t5=build_t5(root / "t5"),
        llama=build_llama(root / "llama"),
        electra=build_electra(root / "electra"),
    )
