"""Prompt formats: the model's chat template, or the JPO paper's plain '### Instructions:' format where a
tokenizer has none; responses tokenized where they sit in the text, for SentencePiece and byte-level BPE
tokenizers alike."""

import pytest

from tests.conftest import CHAT_TEMPLATE, copy_tokenizer
from prefbench.engine.config import TrainConfig
from prefbench.engine.formatting import encode, encode_prompt, is_plain
from prefbench.engine.models import load_tokenizer
from prefbench.util.errors import ConfigError

PAPER_PROMPT = "### Instructions: {}\n\n### Response:"


@pytest.fixture()
def bpe_plain_dir(tiny_model_dir, tmp_path):
    """The byte-level BPE test tokenizer without its chat template (a base model's)."""
    copy_tokenizer(tiny_model_dir, tmp_path)
    tok = load_tokenizer(str(tmp_path), prompt_format=None)
    tok.chat_template = None
    (tmp_path / "chat_template.jinja").unlink(missing_ok=True)
    tok.save_pretrained(tmp_path)
    return tmp_path


def test_a_tokenizer_without_a_template_gets_the_papers_format_with_its_bos(sentencepiece_dir):
    tok = load_tokenizer(str(sentencepiece_dir))
    assert is_plain(tok)
    ids = encode_prompt(tok, "Summarize the post below.")
    # the paper tokenizes its prompt text as a whole, special tokens included (dove/inference.py)
    assert ids == tok(PAPER_PROMPT.format("Summarize the post below."))["input_ids"]
    assert ids[0] == tok.bos_token_id and tok.convert_ids_to_tokens(ids[1]) == "▁###"
    assert tok.decode(ids[1:]) == PAPER_PROMPT.format("Summarize the post below.")


def test_sentencepiece_response_is_tokenized_as_in_the_papers_full_text(sentencepiece_dir):
    tok = load_tokenizer(str(sentencepiece_dir))
    ids, mask = encode(tok, "Say hello.", "Hello there, how are you today?")
    full = tok(PAPER_PROMPT.format("Say hello.") + " Hello there, how are you today?")["input_ids"]
    assert ids == full + [tok.eos_token_id]
    assert sum(mask) == len(ids) - len(encode_prompt(tok, "Say hello."))
    response = ids[len(encode_prompt(tok, "Say hello.")):-1]
    assert tok.convert_ids_to_tokens(response)[0].startswith("▁")  # the word boundary generation produces
    # what generation decodes from those tokens (stripped) encodes back to the same tokens
    assert encode(tok, "Say hello.", tok.decode(response, skip_special_tokens=True).strip())[0] == ids


def test_sentencepiece_under_a_template_ending_in_a_newline_gets_no_spurious_word_boundary(sentencepiece_dir):
    tok = load_tokenizer(str(sentencepiece_dir), prompt_format=None)
    tok.chat_template = CHAT_TEMPLATE    # ChatML on a SentencePiece vocabulary (e.g. OpenHermes-Mistral)
    prompt_ids = encode_prompt(tok, "Say hello.")
    ids, _ = encode(tok, "Say hello.", "Hello there")
    text = tok.apply_chat_template([{"role": "user", "content": "Say hello."}], tokenize=False,
                                   add_generation_prompt=True)
    in_context = tok(text + "Hello there", add_special_tokens=False)["input_ids"][len(prompt_ids):]
    alone = tok("Hello there", add_special_tokens=False)["input_ids"]
    assert ids[len(prompt_ids):-1] == in_context != alone
    assert tok.convert_ids_to_tokens(alone)[0].startswith("▁")
    assert not tok.convert_ids_to_tokens(in_context)[0].startswith("▁")


def test_byte_level_bpe_without_a_template_puts_the_papers_space_before_the_response(bpe_plain_dir):
    tok = load_tokenizer(str(bpe_plain_dir))
    assert is_plain(tok)
    ids, _ = encode(tok, "List two fruits", "apple and banana")
    assert ids == tok(PAPER_PROMPT.format("List two fruits") + " apple and banana")["input_ids"] + [tok.eos_token_id]
    assert tok("a")["input_ids"][0] != tok.bos_token_id      # no BOS where the tokenizer adds none
    first = ids[len(encode_prompt(tok, "List two fruits"))]
    assert tok.convert_ids_to_tokens(first).startswith("Ġ")  # the space belongs to the response's first word


def test_chat_template_responses_are_unchanged_by_in_context_tokenization(tiny_model_dir):
    tok = load_tokenizer(str(tiny_model_dir))
    assert not is_plain(tok)
    for prompt, response in [("Name a fruit", "apple"), ("What is the capital of France?", "Paris is the capital."),
                             ("List two fruits", "- apple\n- banana"), ("Say a colour", " red")]:
        ids, _ = encode(tok, prompt, response)
        alone = tok(response + tok.eos_token, add_special_tokens=False)["input_ids"]
        assert ids == encode_prompt(tok, prompt) + alone


def test_a_response_starting_with_a_newline_after_a_newline_template_falls_back_to_its_own_tokens(tiny_model_dir):
    tok = load_tokenizer(str(tiny_model_dir))
    prompt_ids = encode_prompt(tok, "Name a fruit")
    ids, _ = encode(tok, "Name a fruit", "\napple")
    assert ids == prompt_ids + tok("\napple", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


def test_prompt_format_is_a_choice(tiny_model_dir, sentencepiece_dir):
    plain = load_tokenizer(str(tiny_model_dir), "plain")
    assert is_plain(plain)
    assert plain.decode(encode_prompt(plain, "Hi")) == PAPER_PROMPT.format("Hi")
    assert load_tokenizer(str(tiny_model_dir), "chat").chat_template == CHAT_TEMPLATE
    with pytest.raises(ConfigError, match="has no chat template; use prompt_format 'plain'"):
        load_tokenizer(str(sentencepiece_dir), "chat")
    with pytest.raises(ConfigError, match="prompt_format must be one of auto, chat, plain.*did you mean 'plain'"):
        TrainConfig(prompt_format="plian")


def test_a_conversation_in_the_plain_format_is_a_transcript(sentencepiece_dir):
    tok = load_tokenizer(str(sentencepiece_dir))
    chat = [{"role": "user", "content": "Hi there."}, {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "How do I keep basil alive?"}]
    text = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert text == ("### Instructions: Human: Hi there.\n\nAssistant: Hello!\n\nHuman: How do I keep basil alive?"
                    "\n\n### Response:")
