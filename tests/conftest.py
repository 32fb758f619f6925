import os
import tempfile

# Tests never reach a hub: a hub name must fail at once, not after minutes of retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Hypothesis would keep its caches in ./.hypothesis (the fuzz tests keep no example database at all).
# runs train and generate one piece after the other in the test's own process, where its monkeypatches hold; the
# worker processes of the local executor are tested on their own (tests/test_executors.py)
os.environ.setdefault("PREFBENCH_WORKERS", "1")
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "prefbench-hypothesis"))

import pytest
import yaml
import torch
from transformers import LlamaConfig, LlamaForCausalLM


@pytest.fixture(scope="session")
def tiny_lm():
    """A randomly initialised 2-layer Llama in float64 (no download): exact enough to compare sums."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).double().eval()


CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Llama and a byte-level BPE tokenizer with a chat template, saved like a hub
    checkpoint, so the 'any model by path' code runs exactly as for a real model."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-llama")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = ["Answer briefly: what is the capital of France? Paris is the capital.",
              "List two fruits as bullet points.\n- apple\n- banana", "red blue green yellow ocean mountain"] * 20
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|im_start|>", "<|im_end|>"],
                                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|im_end|>",
                                  bos_token="<|im_start|>")
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def copy_tokenizer(source, folder):
    """The tokenizer files of the model folder ``source`` (its chat template included) copied into ``folder``."""
    import shutil

    for f in source.iterdir():
        if "token" in f.name or f.name.endswith(".jinja"):
            shutil.copy(f, folder / f.name)
    return folder


@pytest.fixture()
def prefs(tmp_path):
    """A small preference file of conditional and joint pairs the tiny model can learn to separate, each scored
    (for objectives that read the scores, ODPO: every pair's scores differ by 7, the others ignore them)."""
    from prefbench.formats.preferences import write_preferences
    from prefbench.formats.records import PreferenceRecord

    records = []
    for i in range(6):
        records.append(PreferenceRecord(f"Name fruit {i}", "apple", f"Name fruit {i}", "mountain ocean green", "conditional",
                                        score_chosen=9.0 - i, score_rejected=2.0 - i))
        records.append(PreferenceRecord(f"Say a colour {i}", "red", f"Say a place {i}", "ocean blue yellow", "joint",
                                        score_chosen=7.5, score_rejected=0.5))
    path = tmp_path / "pairs.jsonl"
    write_preferences(records, path)
    return path


@pytest.fixture(scope="session")
def tiny_4bit_dir(tiny_model_dir, tmp_path_factory):
    """A 64-wide tiny Llama (bitsandbytes' CPU 4-bit kernels need at least 64 input features)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = copy_tokenizer(tiny_model_dir, tmp_path_factory.mktemp("tiny-llama-64"))
    from prefbench.engine.models import load_tokenizer

    tok = load_tokenizer(str(folder))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def sentencepiece_dir(tmp_path_factory):
    """A Llama/Mistral-style SentencePiece tokenizer (BPE with byte fallback, '▁' word boundaries added before
    the first word, <s> prepended) without a chat template, and a 64-wide tiny Mistral using it: the
    stand-in for ``mistralai/Mistral-7B-v0.1`` (the `paper` presets' model)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import MistralConfig, MistralForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-mistral-sp")
    sp = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    sp.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    sp.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                    decoders.Strip(" ", 1, 0)])
    corpus = ["### Instructions: Summarize the post below.\n\n### Response: The roommate eats the food.",
              "Human: How do I keep basil alive? Assistant: Water it when the soil is dry.",
              "Paris is the capital of France. Hello there, how are you today?"] * 20
    sp.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]))
    sp.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                      special_tokens=[("<s>", sp.token_to_id("<s>"))])
    tok = PreTrainedTokenizerFast(tokenizer_object=sp, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    config = MistralConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                           bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    MistralForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_finished_run(tiny_model_dir, tmp_path_factory):
    """dpo and jpo, two seeds each, through ``prefbench run`` on the tiny model: every artifact of a finished run,
    for the tests that only read one (export, push; an export's default folder lands inside it)."""
    from prefbench.pipeline.config import RunConfig
    from prefbench.pipeline.run import run
    from tests.test_run import SPEC

    root = tmp_path_factory.mktemp("finished-run")
    spec = root / "tiny.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFBENCH_CACHE", str(root / "cache"))
        run(RunConfig(objectives=["dpo", "jpo"], benchmark=str(spec), preset="smoke", seeds=[0, 1],
                      model=str(tiny_model_dir), quantization="none", output_dir=str(root / "run")))
    return root / "run"


@pytest.fixture
def sleeps(monkeypatch):
    """The back-off waits of the chat-completions client (judges, served generation), recorded instead of slept."""
    from prefbench.util import chat_endpoint

    recorded: list[float] = []
    monkeypatch.setattr(chat_endpoint.time, "sleep", recorded.append)
    return recorded
