"""Diversified forget and retain prompt sets (METHOD.md section 2), for any named concept.

Forget prompts place the concept in many contexts; each retain prompt is its pair, the same
sentence with the concept removed, replaced by a preserved concept, or (for a class-like
concept of a model that declares its classes) replaced by a sibling class, balanced.
Concepts the base has already erased (`erased`) never appear in a retain prompt.
Held-out test prompts come from disjoint templates and words. Deterministic for a seed.
"""

from __future__ import annotations

import json
import random
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

from . import vocabulary as vocab
from .errors import InvalidInput

BRACKETS = re.compile(r"\[([^\]]*)\]")
MAX_CONCEPTS, MAX_CONCEPT_CHARS, MAX_USER_PROMPTS, MAX_PROMPT_CHARS = 16, 200, 10_000, 500
MAX_DRAWS = 20  # draws of one pair before it is left out because its retain sentence names an erased concept


@dataclass
class PromptSets:
    forget: list[str]
    retain: list[str]  # retain[i] is the pair of forget[i]
    test_forget: list[str] = field(default_factory=list)
    test_retain: list[str] = field(default_factory=list)


@dataclass
class ModelVocabulary:
    """A model's own prompt shapes, from the `prompts` part of its `lethe.json`.

    `classes` is a list, or for a model with several kinds of class a dict {kind: [classes]}
    whose templates have a `{kind}` slot for each kind ("a {digit} in {style} style");
    `for_concepts` turns the latter into the former for the concepts of one job.
    """

    templates: list[str] = field(default_factory=lambda: list(vocab.TEMPLATES))
    test_templates: list[str] = field(default_factory=lambda: list(vocab.TEST_TEMPLATES))
    classes: list[str] | dict[str, list[str]] = field(default_factory=list)
    synonyms: dict[str, list[str]] = field(default_factory=dict)
    words: dict[str, list[str]] = field(default_factory=dict)  # the other kinds' slots and their classes

    def for_concepts(self, concepts: list[str], erased: list[str] = ()) -> ModelVocabulary:
        """The vocabulary with the concepts' kind (the first kind for a concept of none) in the
        `{concept}` slot and as `classes`, and the other kinds' classes, less the erased ones,
        as the words of their slots. A model with one kind of class is returned as it is."""
        if not isinstance(self.classes, dict):
            return self
        kinds = self.classes
        kind = self.kind_of(concepts) or next(iter(kinds))
        words = {k: [n for n in names if n not in erased] for k, names in kinds.items() if k != kind}

        def slot(templates: list[str]) -> list[str]:
            return [t.replace("{" + kind + "}", "{concept}") for t in templates]

        return ModelVocabulary(slot(self.templates), slot(self.test_templates), list(kinds[kind]), self.synonyms, words)


    def kind_of(self, concepts: list[str]) -> str | None:
        """The kind of class that holds every one of the concepts (None: no one kind does)."""
        if not isinstance(self.classes, dict):
            return None
        return next((k for k, names in self.classes.items() if all(c in names for c in concepts)), None)


def read_model_settings(model_dir: str | Path) -> dict:
    """The folder's `lethe.json` ({} when absent)."""
    path = Path(model_dir) / "lethe.json"
    if not path.is_file():
        return {}
    try:
        settings = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InvalidInput("base", f"{path} is not valid JSON: {error}") from None
    if not isinstance(settings, dict):
        raise InvalidInput("base", f"{path} must hold a JSON object, got {type(settings).__name__}")
    return settings


def model_vocabulary(settings: dict) -> ModelVocabulary:
    prompts = settings.get("prompts", {})
    if not isinstance(prompts, dict):
        raise InvalidInput("base", "lethe.json prompts must be an object")
    known = {k: prompts[k] for k in ("templates", "test_templates", "classes", "synonyms") if k in prompts}
    _check_classes(known.get("classes", []))
    return ModelVocabulary(**known)


def _check_classes(classes) -> None:
    """A list of class names, or {kind: [class names]}; anything else from a base's file is refused."""
    lists = classes.values() if isinstance(classes, dict) else [classes]
    if not all(isinstance(names, list) and all(isinstance(n, str) for n in names) for names in lists):
        raise InvalidInput("base", "lethe.json prompts.classes must be a list of strings or an object of such lists")


def check_concepts(concepts: list[str], field_name: str = "concepts") -> list[str]:
    """Strip, bound and reject empty or meaningless concepts, naming the offending entry."""
    if not isinstance(concepts, (list, tuple)) or not concepts:
        raise InvalidInput(field_name, "at least one concept is required")
    if len(concepts) > MAX_CONCEPTS:
        raise InvalidInput(field_name, f"at most {MAX_CONCEPTS} concepts, got {len(concepts)}")
    cleaned = []
    for i, concept in enumerate(concepts):
        where = f"{field_name}[{i}]"
        if not isinstance(concept, str):
            raise InvalidInput(where, f"must be a string, got {concept!r}")
        concept = " ".join(concept.split())
        if not concept:
            raise InvalidInput(where, "must not be empty")
        if len(concept) > MAX_CONCEPT_CHARS:
            raise InvalidInput(where, f"at most {MAX_CONCEPT_CHARS} characters, got {len(concept)}")
        if not any(ch.isalnum() for ch in concept):
            raise InvalidInput(where, f"must contain a letter or digit, got {concept!r}")
        if any(not ch.isprintable() for ch in concept) or set(concept) & set("[]{}"):
            raise InvalidInput(where, f"must not contain control characters, brackets or braces, got {concept!r}")
        cleaned.append(concept)
    return cleaned


def check_user_prompts(prompts: dict | None) -> dict:
    prompts = prompts or {}
    if not isinstance(prompts, dict):
        raise InvalidInput("prompts", "must be an object")
    unknown = set(prompts) - {"forget", "retain", "synonyms", "replace"}
    if unknown:
        raise InvalidInput(f"prompts.{sorted(unknown)[0]}", "unknown key; known: forget, retain, synonyms, replace")
    for key in ("forget", "retain", "synonyms"):
        values = prompts.get(key, [])
        if not isinstance(values, list) or len(values) > MAX_USER_PROMPTS:
            raise InvalidInput(f"prompts.{key}", f"must be a list of at most {MAX_USER_PROMPTS} strings")
        for i, value in enumerate(values):
            if not isinstance(value, str) or not value.strip() or len(value) > MAX_PROMPT_CHARS:
                raise InvalidInput(f"prompts.{key}[{i}]", f"must be a non-empty string of at most {MAX_PROMPT_CHARS} characters")
    if (prompts.get("replace") or prompts.get("retain")) and not prompts.get("forget"):
        raise InvalidInput("prompts.forget", "retain prompts pair with forget prompts, and replace needs them: give forget prompts")
    return prompts


def render(template: str, words: dict[str, str], stand_in: str | None = None) -> str:
    """The sentence with the bracketed fragment kept (stand_in None), dropped (""), or with
    `stand_in` in the concept's place. A template without brackets brackets the concept alone."""
    if "[" not in template:
        template = template.replace("{concept}", "[{concept}]")
    if stand_in is None:
        text = BRACKETS.sub(r"\1", template)
    elif stand_in == "":
        text = BRACKETS.sub("", template)
    else:
        text = BRACKETS.sub(lambda m: m.group(1).replace("{concept}", "{stand_in}"), template)
    text = text.format(**words, stand_in=stand_in)
    text = re.sub(r"\ba (?=[aeiou])", "an ", " ".join(text.split()))
    return text.strip(" ,:")


def check_templates(templates: list[str], where: str, slots=()) -> None:
    """Every template has {concept} and no name but the attributes' and the model's `slots`."""
    allowed = set(vocab.ATTRIBUTES) | {"concept"} | set(slots)
    for i, template in enumerate(templates):
        names = {name for _, name, _, _ in string.Formatter().parse(BRACKETS.sub(r"\1", template)) if name}
        if "{concept}" not in template or names - allowed:
            raise InvalidInput(f"{where}[{i}]", f"a template needs {{concept}} and only {sorted(allowed)}; got {template!r}")


def erased_matcher(erased: list[str], model: ModelVocabulary):
    """A predicate: does a text name one of the erased concepts or their synonyms (whole words, any case)?"""
    names = [name for concept in erased for name in (concept, *model.synonyms.get(concept, []))]
    if not names:
        return lambda text: False
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(name) for name in names) + r")(?!\w)", re.IGNORECASE)
    return lambda text: pattern.search(text) is not None


class _Builder:
    """Draws sentence pairs; every draw comes from one seeded generator."""

    def __init__(self, concepts, preserve, model: ModelVocabulary, synonyms, seed, names_erased=lambda text: False):
        self.rng = random.Random(seed)
        self.concepts, self.preserve, self.names_erased = concepts, preserve, names_erased
        self.names = {c: [c, *model.synonyms.get(c, []), *synonyms] for c in concepts}
        in_classes = all(c in model.classes for c in concepts)
        siblings = [c for c in model.classes if c not in concepts and not names_erased(c)]
        self.siblings = siblings if in_classes else []

    def stand_in(self, i: int) -> str:
        """What takes the concept's place in the i-th retain sentence."""
        if self.siblings:  # class removal: the sibling classes, balanced
            return self.siblings[i % len(self.siblings)]
        if self.preserve and i % 2 == 1:  # every other pair puts a preserved concept in its place
            return self.preserve[(i // 2) % len(self.preserve)]
        return ""

    def pairs(self, count: int, templates: list[str], words: dict[str, list[str]]) -> tuple[list[str], list[str]]:
        forget, retain = [], []
        for i in range(count):
            pair = self._clean_pair(i, templates, words)
            if pair is not None:
                forget.append(pair[0])
                retain.append(pair[1])
        return forget, retain

    def _clean_pair(self, i: int, templates, words) -> tuple[str, str] | None:
        """The i-th pair, drawn again while its retain sentence names an erased concept."""
        for _ in range(MAX_DRAWS):
            template = self.rng.choice(templates)
            chosen = {name: self.rng.choice(values) for name, values in words.items()}
            chosen["concept"] = self.rng.choice(self.names[self.concepts[i % len(self.concepts)]])
            retain = render(template, chosen, self.stand_in(i))
            if not self.names_erased(retain):
                return render(template, chosen), retain
        return None


def build_prompt_sets(
    concepts: list[str],
    num_prompts: int,
    seed: int = 0,
    preserve: list[str] = (),
    prompts: dict | None = None,
    model: ModelVocabulary | None = None,
    num_test: int = 8,
    erased: list[str] = (),
) -> PromptSets:
    """Forget prompts with their paired retain prompts, and held-out test pairs.

    The user's forget prompts come first and the built ones fill up to `num_prompts`
    (`replace`: only the user's). The user's retain prompts pair with the user's forget
    prompts in order, cycled; without any, drawn retain sentences take their place.
    `erased` (the base's already erased concepts) are left out of every retain prompt, of the
    preserved concepts and of the sibling classes.
    """
    concepts = check_concepts(concepts)
    preserve = check_concepts(list(preserve), "preserve") if preserve else []
    user = check_user_prompts(prompts)
    model = (model or ModelVocabulary()).for_concepts(concepts, list(erased))
    check_templates(model.templates, "lethe.json prompts.templates", model.words)
    check_templates(model.test_templates, "lethe.json prompts.test_templates", model.words)
    names_erased = erased_matcher(list(erased), model)
    preserve = [concept for concept in preserve if not names_erased(concept)]
    builder = _Builder(concepts, preserve, model, user.get("synonyms", []), seed, names_erased)
    train_words = {**vocab.vocabulary(0), **model.words}
    user_forget = user.get("forget", [])
    user_retain = [prompt for prompt in user.get("retain", []) if not names_erased(prompt)]
    built = 0 if user.get("replace") else max(0, num_prompts - len(user_forget))
    built_forget, built_retain = builder.pairs(built, model.templates, train_words)
    if user_retain:
        user_paired = [user_retain[i % len(user_retain)] for i in range(len(user_forget))]
    else:
        user_paired = builder.pairs(len(user_forget), model.templates, train_words)[1]
    forget, retain = user_forget + built_forget, user_paired + built_retain
    test_forget, test_retain = builder.pairs(num_test, model.test_templates, {**vocab.vocabulary(1), **model.words})
    return PromptSets(forget, retain, test_forget, test_retain)
