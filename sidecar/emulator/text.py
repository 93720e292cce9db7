"""Deterministic prompts-in, tokens-out: a stand-in tokenizer and a seeded "model".

Tests assert on content, so the same prompt and seed always give the same answer: the answer's
random generator is keyed by a hash of the seed and the prompt, never by arrival order or load.
Tokens are words (with their leading space), punctuation and paragraph breaks, roughly the
granularity of a BPE vocabulary, so counts look like a real model's. Prompt tokens also get ids,
grouped into blocks and chain-hashed, so identical prompt prefixes hit the emulated prefix cache.
"""

from __future__ import annotations

import hashlib
import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sidecar.emulator.controls import Behaviour

WORDS: tuple[str, ...] = tuple(
    """
    the a an of to in on for with at by from about across after along among around before
    behind below beside between beyond during inside near over since through under until upon
    system model token request server engine cache block queue batch latency memory network
    signal metric alert dashboard window sample record bucket stream answer prompt context
    river mountain garden window lantern harbor meadow valley forest island canyon desert
    orchard bridge tower market village kitchen library station theater museum workshop
    quiet bright gentle rapid steady careful simple clever patient curious honest modest
    silver golden crimson amber violet emerald copper ivory scarlet cobalt
    build measure compare explain describe observe follow gather arrange balance recover
    carry deliver prepare protect question remember report return select settle share
    often rarely always sometimes usually nearly mostly partly fully barely
    first second third next last early late later soon still already
    small large short long wide narrow deep shallow heavy light warm cool
    people teacher student driver farmer builder painter writer doctor sailor
    morning evening winter summer autumn spring season moment minute hour
    because while although unless whereas therefore however meanwhile otherwise
    is was are were has had does did can could will would should might must
    """.split()  # noqa: SIM905 - a word list reads better as prose than as 200 literals
)
"""The vocabulary of generated answers (no meaning intended, only shape)."""

REFUSAL: tuple[str, ...] = (
    "I",
    "'m",
    " sorry",
    ",",
    " but",
    " I",
    " can",
    "'t",
    " help",
    " with",
    " that",
    " request",
    ".",
)
"""The fixed refusal, so a drift test can count refusals by exact text."""

FinishReason = Literal["stop", "length"]

_PIECE = re.compile(r"\s*\w+|\s*[^\w\s]|\s+")
_WORD_CHUNK = 6
"""Long words split into 6-character pieces, as BPE vocabularies do."""

LLAMA3_SYSTEM_PREAMBLE = (
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
    "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
)


def tokenize(text: str) -> list[str]:
    """Split text into token strings (words keep their leading whitespace)."""
    pieces: list[str] = []
    for match in _PIECE.finditer(text):
        piece = match.group(0)
        if len(piece) <= _WORD_CHUNK + 1:
            pieces.append(piece)
            continue
        pieces.extend(piece[i : i + _WORD_CHUNK] for i in range(0, len(piece), _WORD_CHUNK))
    return pieces


def token_ids(text: str) -> list[int]:
    """Stable ids for the tokens of ``text`` (a CRC of each piece)."""
    return [zlib.crc32(piece.encode("utf-8")) for piece in tokenize(text)]


def render_chat(messages: Sequence[tuple[str, str]]) -> str:
    """A Llama-3-style chat template: system preamble, one header per message, assistant cue."""
    parts = [LLAMA3_SYSTEM_PREAMBLE]
    parts.extend(
        f"<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>"
        for role, content in messages
    )
    parts.append("<|start_header_id|>assistant<|end_header_id|>\n\n")
    return "".join(parts)


def block_hashes(ids: Sequence[int], block_size: int) -> tuple[int, ...]:
    """Chain hashes of the *full* blocks of a prompt: equal prefixes give equal leading hashes."""
    hashes: list[int] = []
    previous = 0
    for start in range(0, len(ids) - block_size + 1, block_size):
        previous = hash((previous, tuple(ids[start : start + block_size])))
        hashes.append(previous)
    return tuple(hashes)


@dataclass(frozen=True, slots=True)
class OutputPlan:
    """What the model will say: one text delta per generated token, and why it stops."""

    deltas: tuple[str, ...]
    finish_reason: FinishReason
    stop_reason: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.deltas)


def _rng_for(seed: int, key: str) -> _Dice:
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return _Dice(int.from_bytes(digest[:16], "big"))


class _Dice:
    """A tiny deterministic generator (xorshift), cheaper to seed than ``random.Random``."""

    __slots__ = ("_state",)

    def __init__(self, seed: int) -> None:
        self._state = (seed & ((1 << 64) - 1)) or 0x9E3779B97F4A7C15

    def next_int(self) -> int:
        x = self._state
        x ^= (x << 13) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 7
        x ^= (x << 17) & 0xFFFFFFFFFFFFFFFF
        self._state = x
        return x

    def uniform(self) -> float:
        return (self.next_int() >> 11) / float(1 << 53)

    def below(self, n: int) -> int:
        return self.next_int() % n

    def gauss(self) -> float:
        u1 = max(self.uniform(), 1e-12)
        u2 = self.uniform()
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def _words(dice: _Dice, count: int) -> list[str]:
    """``count`` token strings of sentence-shaped filler."""
    out: list[str] = []
    sentence_left = 6 + dice.below(12)
    sentences_left = 3 + dice.below(3)
    capital = True
    while len(out) < count:
        if sentence_left == 0:
            out.append(".")
            sentences_left -= 1
            sentence_left = 6 + dice.below(12)
            capital = True
            if sentences_left == 0 and len(out) < count:
                out.append("\n\n")
                sentences_left = 3 + dice.below(3)
            continue
        word = WORDS[dice.below(len(WORDS))]
        if capital:
            word = word.capitalize()
        out.append(word if not out or out[-1] == "\n\n" else " " + word)
        capital = False
        sentence_left -= 1
        if sentence_left > 1 and dice.below(12) == 0:
            out.append(",")
    return out[:count]


def plan_output(
    key: str,
    *,
    seed: int,
    behaviour: Behaviour,
    limit: int,
    stop: Sequence[str] = (),
    include_stop: bool = False,
    ignore_eos: bool = False,
    min_tokens: int = 0,
) -> OutputPlan:
    """The deterministic answer to prompt ``key``.

    ``limit`` is the most tokens the request may generate (``max_tokens`` or what is left of the
    context); reaching it finishes with ``length``. ``stop`` strings end the answer early
    (finish ``stop``, ``stop_reason`` = the string), cut from the text unless ``include_stop``.
    """
    dice = _rng_for(seed, key)
    refuse = dice.uniform() < behaviour.refusal_share
    runs_long = dice.uniform() < behaviour.length_cutoff_share
    sigma = behaviour.output_tokens_sigma
    natural = behaviour.output_tokens_mean * math.exp(sigma * dice.gauss() - sigma * sigma / 2)
    wanted = len(REFUSAL) if refuse else max(1, round(natural))
    if (runs_long and not refuse) or ignore_eos:
        wanted = limit
    wanted = max(wanted, min_tokens)
    count = min(wanted, limit)
    reason: FinishReason = "length" if wanted >= limit else "stop"
    tokens = list(REFUSAL[:count]) if refuse else _words(dice, count)
    if stop:
        cut = _apply_stop(tokens, stop, include_stop)
        if cut is not None:
            return cut
    return OutputPlan(tuple(tokens), reason)


def _apply_stop(tokens: list[str], stop: Sequence[str], include_stop: bool) -> OutputPlan | None:
    """Cut the answer at the earliest stop string, or None when none occurs."""
    full = "".join(tokens)
    best: tuple[int, int, str] | None = None
    for needle in stop:
        if not needle:
            continue
        at = full.find(needle)
        if at >= 0 and (best is None or at < best[0]):
            best = (at, at + len(needle), needle)
    if best is None:
        return None
    start, end, needle = best
    keep_until = end if include_stop else start
    deltas: list[str] = []
    position = 0
    for token in tokens:
        token_end = position + len(token)
        deltas.append(full[min(position, keep_until) : min(token_end, keep_until)])
        position = token_end
        if token_end >= end:
            break
    return OutputPlan(tuple(deltas), "stop", needle)
