"""Constrained generation: what a constraint says, and how a decode loop enforces it.

A :class:`Constraint` is one of a JSON schema, a regular expression or a context-free grammar
(Lark syntax, as llguidance reads it), set on a request (``GenerateRequest.constraint``), a flow
node (``constraint:``) or through :func:`constrained` on any model::

    constraint: {json_schema: {type: object, properties: {answer: {type: integer}},
                               required: [answer]}}
    constraint: {regex: "[0-9]+"}
    constraint: {grammar: 'start: "yes" | "no"'}

The whole output must match (a regex is anchored at both ends; JSON is one value).

Local models enforce it token by token with llguidance (the ``constraints`` extra; why this
engine: ``docs/constraints.md``). :class:`TokenMatcher` follows one sequence: it says which
tokens may come next (a mask, for :func:`~forkpath.models.choose_token`'s ``allowed``) or
whether one token may (a check, for its rejection sampler ``check``). API models use the
provider's JSON-schema mode where there is one, else sample and verify with
:meth:`Constraint.accepts`.

Bad constraints fail when the spec is read: an invalid regex, schema or grammar is one line
naming the problem (pydantic's error, which the flow loader prefixes with ``file:line``).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from forkpath._errors import ConfigError

if TYPE_CHECKING:
    import llguidance

ENGINE_HINT = "constrained decoding needs llguidance: pip install 'forkpath[constraints]'"
Method = Literal["mask", "rejection"]


class Constraint(BaseModel):
    """What the whole generated text must be: exactly one of ``json_schema``, ``regex``, ``grammar``.

    Example:
        >>> Constraint(regex=r"(yes|no)")
        >>> Constraint(json_schema={"type": "object", "properties": {"n": {"type": "integer"}}})
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    json_schema: dict[str, Any] | None = None
    """A JSON Schema (draft 2020-12 or older); the output is one JSON value it accepts."""
    regex: str | None = None
    """A regular expression the whole output matches (Rust regex syntax: no look-around, no
    back-references)."""
    grammar: str | None = None
    """A context-free grammar in Lark syntax whose ``start`` rule the whole output matches."""
    method: Method = "mask"
    """How a local model enforces it: ``mask`` computes the allowed tokens at every step;
    ``rejection`` samples from the model and checks only the sampled token, masking it out and
    drawing again when it is not allowed (the same distribution, fewer checks)."""
    max_tries: int = Field(default=8, ge=1, le=1000)
    """For models that cannot mask tokens (most APIs): how many samples to draw until one
    satisfies the constraint (sample and verify)."""

    @model_validator(mode="after")
    def _one_kind(self) -> Constraint:
        given = [k for k in ("json_schema", "regex", "grammar") if getattr(self, k) is not None]
        if len(given) != 1:
            what = " and ".join(given) if given else "none"
            raise ValueError(f"a constraint is exactly one of json_schema, regex, grammar (given: {what})")
        return self

    @field_validator("regex")
    @classmethod
    def _valid_regex(cls, regex: str | None) -> str | None:
        if regex is not None:
            _check_regex(regex)
        return regex

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is not None:
            _check_schema(schema)
        return schema

    @field_validator("grammar")
    @classmethod
    def _valid_grammar(cls, grammar: str | None) -> str | None:
        if grammar is not None:
            _check_grammar(grammar)
        return grammar

    @property
    def kind(self) -> str:
        return (
            "json_schema"
            if self.json_schema is not None
            else "regex"
            if self.regex is not None
            else "grammar"
        )

    def engine_grammar(self) -> str:
        """The constraint as an llguidance grammar (raises ``ConfigError`` without the engine)."""
        return _engine_grammar(self.kind, self._source())

    def _source(self) -> str:
        if self.json_schema is not None:
            return json.dumps(self.json_schema)
        return self.regex if self.regex is not None else self.grammar or ""

    def accepts(self, text: str) -> bool:
        """Whether ``text`` satisfies the constraint: checked independently of the decoder for
        JSON (parse + ``jsonschema``) and regex (Python ``re.fullmatch``); a grammar is checked
        by llguidance byte by byte."""
        if self.json_schema is not None:
            import jsonschema

            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                return False
            return jsonschema.validators.validator_for(self.json_schema)(self.json_schema).is_valid(value)
        if self.regex is not None:
            try:
                return re.fullmatch(self.regex, text, flags=re.DOTALL) is not None
            except re.error:  # Rust-only syntax: fall back to the engine
                pass
        return _engine_accepts(self.engine_grammar(), text)

    def accepts_prefix(self, text: str) -> bool:
        """Whether ``text`` can still be completed into an output that satisfies the constraint
        (checked by llguidance, byte by byte)."""
        return _engine_accepts(self.engine_grammar(), text, whole=False)


# -- validation --------------------------------------------------------------------------------


def _llguidance() -> Any:
    try:
        import llguidance
    except ImportError:
        return None
    return llguidance


def _check_regex(regex: str) -> None:
    try:
        re.compile(regex)
    except re.error as e:
        raise ValueError(f"invalid regex {regex[:60]!r}: {e}") from None
    _check_engine("regex", regex)


def _check_schema(schema: dict[str, Any]) -> None:
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "the top level"
        raise ValueError(f"invalid JSON schema at {where}: {e.message}") from None
    _check_engine("json_schema", json.dumps(schema))


def _check_grammar(grammar: str) -> None:
    if not grammar.strip():
        raise ValueError('the grammar is empty; give Lark rules with a start rule, e.g. start: "yes" | "no"')
    if _llguidance() is None:
        raise ValueError(f"cannot check the grammar: {ENGINE_HINT}")
    _check_engine("grammar", grammar)


def _check_engine(kind: str, source: str) -> None:
    """What llguidance says of the constraint, when it is installed (it knows what it supports)."""
    if _llguidance() is None:
        return
    try:
        grammar = _engine_grammar(kind, source)
    except ConfigError as e:
        raise ValueError(str(e)) from None
    import llguidance

    message = llguidance.LLMatcher.validate_grammar(grammar)
    if message:
        flat = " ".join(line.strip() for line in message.strip().splitlines() if line.strip())
        raise ValueError(f"invalid {kind.replace('_', ' ')}: {flat[:300]}")


@functools.lru_cache(maxsize=256)
def _engine_grammar(kind: str, source: str) -> str:
    lg = _llguidance()
    if lg is None:
        raise ConfigError(ENGINE_HINT)
    matcher = lg.LLMatcher
    try:
        if kind == "json_schema":
            return str(matcher.grammar_from_json_schema(source, defaults={"whitespace_flexible": False}))
        if kind == "regex":
            return str(matcher.grammar_from_regex(source))
        return str(matcher.grammar_from_lark(source))
    except ValueError as e:
        raise ConfigError(f"invalid {kind.replace('_', ' ')}: {e}") from None


# -- checking text with the engine ---------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _byte_tokenizer() -> llguidance.LLTokenizer:
    """A tokenizer whose tokens are the 256 bytes (and an end token): grammar checks on text."""
    import llguidance

    class Bytes:
        def __init__(self) -> None:
            self.eos_token_id = 256
            self.bos_token_id = None
            self.tokens = [bytes([b]) for b in range(256)] + [b"\xff<eos>"]

        def __call__(self, s: bytes | str) -> list[int]:
            return list(s.encode() if isinstance(s, str) else s)

    return llguidance.LLTokenizer(llguidance.TokenizerWrapper(Bytes()))


def _engine_accepts(grammar: str, text: str, *, whole: bool = True) -> bool:
    import llguidance

    tokenizer = _byte_tokenizer()
    matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
    data = list(text.encode())
    if not matcher.consume_tokens(data) or matcher.is_error():
        return False
    return bool(matcher.is_accepting()) if whole else True


# -- following one sequence of a local model ----------------------------------------------------


class TokenMatcher:
    """The constraint's state along one generated sequence of a local model.

    ``end_tokens`` are the model's end-of-turn tokens: allowed exactly when the text so far is
    complete. Create one per sequence with :func:`token_matcher`.
    """

    def __init__(
        self, tokenizer: llguidance.LLTokenizer, grammar: str, n_vocab: int, end_tokens: Sequence[int]
    ) -> None:
        import llguidance

        self._matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
        if self._matcher.is_error():
            raise ConfigError(f"constraint rejected by the engine: {self._matcher.get_error()}")
        self.n_vocab = n_vocab
        self.end_tokens = frozenset(end_tokens)
        self._tokenizer_size = tokenizer.vocab_size
        self.checks = 0
        """Tokens checked one by one (rejection sampling's cost)."""
        self.masks = 0
        """Full masks computed (masking's cost)."""
        self._mask: np.ndarray | None = None
        self._forced: bool | None = None

    def copy(self) -> TokenMatcher:
        """An independent matcher in the same state (for branching searches)."""
        twin = object.__new__(TokenMatcher)
        twin.__dict__.update(self.__dict__)
        twin._matcher = self._matcher.deep_copy()
        twin.checks = twin.masks = 0
        return twin

    def allowed(self) -> np.ndarray:
        """A boolean array over the model's vocabulary: the tokens that may come next."""
        if self._mask is not None:
            return self._mask
        self.masks += 1
        bits = np.frombuffer(self._matcher.compute_bitmask(), dtype=np.uint8)
        mask = np.unpackbits(bits, bitorder="little")[: self._tokenizer_size].astype(bool)
        if mask.size < self.n_vocab:
            mask = np.concatenate([mask, np.zeros(self.n_vocab - mask.size, dtype=bool)])
        if self._matcher.is_accepting() or self._matcher.is_stopped():
            mask[list(self.end_tokens)] = True
        self._mask = mask[: self.n_vocab]
        return self._mask

    def allows(self, token: int) -> bool:
        """Whether ``token`` may come next: one check, no mask, except where the grammar forces
        the next bytes. There the engine's mask admits only the canonical tokenization of those
        bytes (``{"`` as one token, not ``{`` then ``"``), and the check follows the mask so both
        methods sample from the same distribution; such masks are small and quick."""
        self.checks += 1
        if self._forced is None:
            self._forced = bool(self._matcher.compute_ff_bytes())
        if self._forced:
            return bool(self.allowed()[token])
        if token in self.end_tokens:
            return self._matcher.is_accepting() or self._matcher.is_stopped()
        if token >= self._tokenizer_size:
            return False
        return bool(self._matcher.validate_tokens([token]) == 1)

    def advance(self, token: int) -> None:
        """Take ``token`` as generated (it must be allowed)."""
        self._mask, self._forced = None, None
        if token in self.end_tokens:
            return
        if not self._matcher.consume_token(token):
            raise ConfigError(f"token {token} broke the constraint: {self._matcher.get_error()}")

    @property
    def finished(self) -> bool:
        """True when nothing more may be generated (the grammar has ended)."""
        return bool(self._matcher.is_stopped())

    @property
    def complete(self) -> bool:
        """True when the text so far satisfies the constraint."""
        return bool(self._matcher.is_accepting() or self._matcher.is_stopped())


_TOKENIZERS: dict[str, Any] = {}


def token_matcher(
    constraint: Constraint,
    *,
    vocab_key: str,
    make_tokenizer: Any,
    n_vocab: int,
    end_tokens: Sequence[int],
) -> TokenMatcher:
    """A :class:`TokenMatcher` for a model's vocabulary.

    ``make_tokenizer()`` builds the llguidance tokenizer (about a second for 150k tokens); it is
    built once per ``vocab_key`` and kept.
    """
    grammar = constraint.engine_grammar()
    if vocab_key not in _TOKENIZERS:
        _TOKENIZERS[vocab_key] = make_tokenizer()
    return TokenMatcher(_TOKENIZERS[vocab_key], grammar, n_vocab, end_tokens)


def generic_matcher(constraint: Constraint, model: Any, vocab_key: str) -> TokenMatcher:
    """A :class:`TokenMatcher` for any token model, its vocabulary read through ``detokenize``
    (one call per token: for small vocabularies such as the fake model's; llama.cpp models
    read theirs directly)."""

    def make() -> Any:
        import llguidance

        ends = sorted(model.end_tokens)
        size = int(getattr(model, "n_vocab", 0) or _vocab_size(model))

        class Vocabulary:
            def __init__(self) -> None:
                self.eos_token_id = ends[0]
                self.bos_token_id = None
                self.tokens = [
                    b"\xff<end>" if i in ends else model.detokenize([i]).encode() for i in range(size)
                ]

            def __call__(self, s: bytes | str) -> list[int]:
                return list(model.tokenize(s.decode() if isinstance(s, bytes) else s))

        return llguidance.LLTokenizer(llguidance.TokenizerWrapper(Vocabulary()), eos_token=ends)

    ends = sorted(model.end_tokens)
    return token_matcher(
        constraint,
        vocab_key=f"generic:{vocab_key}",
        make_tokenizer=make,
        n_vocab=_vocab_size(model),
        end_tokens=ends,
    )


def _vocab_size(model: Any) -> int:
    size = getattr(model, "vocab_size", None)
    if size is None:
        from forkpath.models._fake import VOCAB_SIZE, FakeModel

        if not isinstance(model, FakeModel):
            raise ConfigError(f"cannot read the vocabulary of {model!r} for a constraint")
        size = VOCAB_SIZE
    return int(size)
