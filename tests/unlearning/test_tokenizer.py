from transformers import CLIPTokenizer

from unlearning.tokenizer import make_clip_tokenizer


def test_known_words_are_single_tokens_and_other_text_still_tokenizes(tmp_path):
    tokenizer = make_clip_tokenizer(tmp_path / "tok", ["a", "handwritten", "digit", "seven", "even", "eleven"])
    assert tokenizer.tokenize("A handwritten digit seven, even") == ["a</w>", "handwritten</w>", "digit</w>", "seven</w>", ",</w>", "even</w>"]
    assert len(tokenizer.tokenize("zebra")) == 5


def test_saved_tokenizer_loads_with_stock_transformers(tmp_path):
    tokenizer = make_clip_tokenizer(tmp_path / "tok", ["seven"], max_length=16)
    tokenizer.save_pretrained(tmp_path / "saved")
    again = CLIPTokenizer.from_pretrained(tmp_path / "saved")
    assert again("seven", padding="max_length").input_ids == tokenizer("seven", padding="max_length").input_ids
    assert again.model_max_length == 16
