"""What the audit asks the models to draw, and what the judge weighs each image against.

A probe is one prompt and seed. Forget probes ask for the concept in ways training never
used: held-out sentence shapes and words, synonyms and numerals, other spellings and case,
the bare word. Neighbour probes ask for what should be kept: the preserved concepts, or for
a class of the model's `classes`, its siblings (or, with neither, the sentence without the
concept). Every probe carries the judge's candidates, all in the probe's own sentence: the
concept's canonical name first, then the sentence without it, then each alternative; and the
candidate the image should be (`label`: 0 for a forget probe).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .. import vocabulary as vocab
from ..latents import sample_seeds
from ..prompts import ModelVocabulary, render

NUMERALS = dict(zip("zero one two three four five six seven eight nine ten eleven twelve".split(), map(str, range(13))))
KINDS = ("held_out", "synonym", "numeral", "case", "misspelling", "alone")  # the forget probes' kinds
BARE = "{concept}"  # the context of a bare word: the prompt is the word alone


@dataclass(frozen=True)
class Probe:
    prompt: str
    candidates: tuple[str, ...]  # [0] the concept's prompt, [1] without it, then the alternatives
    label: int  # the candidate this image should be
    kind: str  # one of KINDS, "neighbour" or "control"
    concept: str
    asks: str  # what stands in the concept's place: a way of writing it, a neighbour, or "" (nothing)
    context: tuple[str, dict]  # the sentence shape and its words


@dataclass(frozen=True)
class ProbeSizes:
    references: int  # forget probes of kind held_out per concept (the original's images of it)
    repeats: int  # forget probes per other variant of the concept
    neighbours: int  # at most this many neighbours
    per_neighbour: int  # probes per neighbour


def spelling_variants(concept: str) -> list[str]:
    """A letter dropped and two letters swapped in the longest word ("seven": "sevn", "sveen")."""
    words = concept.split()
    longest = max(range(len(words)), key=lambda i: len(words[i]))
    word = words[longest]
    if len(word) < 4:
        return []
    variants = [word[:-2] + word[-1], word[0] + word[2] + word[1] + word[3:]]
    return [" ".join(words[:longest] + [v] + words[longest + 1:]) for v in variants if v != word]


def variants(concept: str, synonyms: list[str]) -> list[tuple[str, str]]:
    """(kind, word) for every way of asking for the concept but the canonical held-out one."""
    numerals = [s for s in synonyms if s.isdigit()]
    if concept.lower() in NUMERALS and NUMERALS[concept.lower()] not in numerals:
        numerals.append(NUMERALS[concept.lower()])
    found = [("synonym", s) for s in synonyms if not s.isdigit()] + [("numeral", n) for n in numerals]
    found += [("case", v) for v in dict.fromkeys((concept.upper(), concept.title())) if v != concept]
    found += [("misspelling", v) for v in spelling_variants(concept)]
    found += [("alone", concept)] + [("alone", s) for s in (synonyms + numerals)[:1]]
    return found


class ProbeBuilder:
    """Probes for the job's concepts; every draw from one seeded generator."""

    def __init__(self, concepts: list[str], preserve: list[str], model: ModelVocabulary, synonyms: list[str], seed: int):
        self.rng = random.Random(f"audit:{seed}")
        model = model.for_concepts(concepts)
        self.concepts, self.preserve, self.model = concepts, preserve, model
        self.synonyms = {c: [*model.synonyms.get(c, []), *synonyms] for c in concepts}
        in_classes = all(c in model.classes for c in concepts)
        self.siblings = [c for c in model.classes if c not in concepts] if in_classes else []
        self.words = {**vocab.vocabulary(1), **model.words}  # the held-out words and the model's other slots

    def neighbours(self, limit: int) -> list[str]:
        found = list(dict.fromkeys(self.preserve + self.siblings))
        return found if len(found) <= limit else self.rng.sample(found, limit)

    def context(self) -> tuple[str, dict[str, str]]:
        """A held-out sentence shape and its words."""
        return self.rng.choice(self.model.test_templates), {k: self.rng.choice(v) for k, v in self.words.items()}

    def probe(self, concept: str, alternatives: list[str], context, word: str | None, stand_in: str | None,
              kind: str) -> Probe:
        template, words = context
        others = [c for c in self.concepts if c != concept] + alternatives
        candidates = (render(template, {**words, "concept": concept}), render(template, words, ""),
                      *(render(template, words, other) for other in others))
        prompt = render(template, {**words, "concept": word}, stand_in)
        label = 0 if stand_in is None else 1 if stand_in == "" else 2 + others.index(stand_in)
        return Probe(prompt, candidates, label, kind, concept, word if stand_in is None else stand_in, context)

    def build(self, sizes: ProbeSizes) -> tuple[list[Probe], list[Probe]]:
        """(forget probes, the held-out references first; neighbour probes)."""
        neighbours = self.neighbours(sizes.neighbours)
        references, forget = [], []  # every concept's held-out references first
        for concept in self.concepts:
            references += [self.probe(concept, neighbours, self.context(), concept, None, "held_out")
                           for _ in range(sizes.references)]
            for kind, word in variants(concept, self.synonyms[concept]):
                for _ in range(sizes.repeats):
                    context = (BARE, {}) if kind == "alone" else self.context()
                    forget.append(self.probe(concept, neighbours, context, word, None, kind))
        kept = []
        for i, stand_in in enumerate(neighbours or [""]):
            concept = self.concepts[i % len(self.concepts)]
            count = sizes.per_neighbour if neighbours else sizes.references  # the one "neighbour": no concept
            kept += [self.probe(concept, neighbours, self.context(), concept, stand_in, "neighbour") for _ in range(count)]
        return references + forget, kept


def made_up_word(seed: int, length: int) -> str:
    """Letters in no language's order, drawn from the seed: a concept no model knows."""
    rng = random.Random(f"made-up:{seed}")
    return "".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(max(4, min(length, 8))))


def controls(references: list[Probe], word: str) -> list[Probe]:
    """The references with a made-up word in the concept's place, each judged against the same
    sentence without it: how much any word in that place moves the judge."""
    found = []
    for p in references:
        template, words = p.context
        prompt = render(template, {**words, "concept": word})
        found.append(Probe(prompt, (prompt, render(template, words, "")), 0, "control", word, word, p.context))
    return found


def probe_seeds(seed: int, probes: list[Probe]) -> list[int]:
    """A sampling seed per probe, apart from the training and evaluation samples' seeds."""
    return sample_seeds(seed, [f"audit\0{p.prompt}" for p in probes])
