"""A CLIP tokenizer made from local files, for models built here (no hub download).

The vocabulary is byte-level (every byte, alone and as a word end) plus one merge chain
per known word, so each known word becomes a single token and any other text still
tokenizes, character by character.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from transformers import CLIPTokenizer

START, END = "<|startoftext|>", "<|endoftext|>"


def byte_alphabet() -> dict[int, str]:
    """CLIP's byte-to-character table: printable bytes stand for themselves, the rest
    are shifted past 255 so that no token contains whitespace or control characters."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, shift = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shift)
            shift += 1
    return dict(sorted(table.items()))


def _word_merges(word: str) -> list[tuple[str, str]]:
    """The left-to-right merges that build `word` (already byte-mapped) as one token."""
    symbols = list(word[:-1]) + [word[-1] + "</w>"]
    merges, current = [], symbols[0]
    for symbol in symbols[1:]:
        merges.append((current, symbol))
        current += symbol
    return merges


def write_clip_tokenizer(directory: str | Path, words: Iterable[str]) -> Path:
    """Write vocab.json and merges.txt for a CLIP BPE tokenizer that knows `words`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    alphabet = byte_alphabet()
    byte_chars = list(alphabet.values())
    vocab: dict[str, int] = {}
    for token in byte_chars + [c + "</w>" for c in byte_chars]:
        vocab.setdefault(token, len(vocab))
    merges: list[tuple[str, str]] = []
    # Longest words first: their merge chains rank before any shorter word's, so a
    # shorter word ("even") cannot split a longer one ("seven") on the way.
    for word in sorted({w.lower() for w in words if len(w) > 1}, key=lambda w: (-len(w), w)):
        mapped = "".join(alphabet[b] for b in word.encode("utf-8"))
        for left, right in _word_merges(mapped):
            if (left, right) not in merges:
                merges.append((left, right))
                vocab.setdefault(left + right, len(vocab))
    for special in (START, END):
        vocab.setdefault(special, len(vocab))
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (directory / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


def make_clip_tokenizer(directory: str | Path, words: Iterable[str], max_length: int = 77) -> CLIPTokenizer:
    """Write the files and load them the way diffusers pipelines load a tokenizer."""
    write_clip_tokenizer(directory, words)
    tokenizer = CLIPTokenizer.from_pretrained(str(directory), model_max_length=max_length)
    return tokenizer
