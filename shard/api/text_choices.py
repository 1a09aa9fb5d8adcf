"""Legacy completion choices as OpenAI shapes them: `echo` puts the prompt before each
choice's text, and `logprobs` (a count) gives parallel lists, one entry per token, with each
token's character offset from the prompt's start (what lm-evaluation-harness reads to score
a continuation)."""

from collections.abc import Sequence
from dataclasses import dataclass

from shard.api.protocol import TextChoice, TextLogprobs
from shard.engine.client import Generation
from shard.engine.types import ChoiceDelta, FinishReason, TokenLogprob


@dataclass(frozen=True)
class TextShape:
    """What the body asked of each choice beyond its text."""

    echo: bool = False
    logprobs: bool = False


def text_logprobs(
    items: Sequence[TokenLogprob], offset: int, first_token: bytes | None = None
) -> tuple[TextLogprobs, int]:
    """The legacy lists for `items`, the first at character `offset`, after `first_token`
    (which has no logprob) if given; and the offset after the last."""
    out = TextLogprobs(tokens=[], token_logprobs=[], top_logprobs=[], text_offset=[])
    if first_token is not None:
        token = first_token.decode(errors="replace")
        out.tokens.append(token)
        out.token_logprobs.append(None)
        out.top_logprobs.append(None)
        out.text_offset.append(offset)
        offset += len(token)
    for item in items:
        token = item.token.decode(errors="replace")
        out.tokens.append(token)
        out.token_logprobs.append(item.logprob)
        top = {alternative.decode(errors="replace"): lp for alternative, lp in item.top}
        out.top_logprobs.append({**top, token: item.logprob})
        out.text_offset.append(offset)
        offset += len(token)
    return out, offset


def joined(parts: Sequence[TextLogprobs]) -> TextLogprobs:
    return TextLogprobs(
        tokens=[token for part in parts for token in part.tokens],
        token_logprobs=[lp for part in parts for lp in part.token_logprobs],
        top_logprobs=[top for part in parts for top in part.top_logprobs],
        text_offset=[offset for part in parts for offset in part.text_offset],
    )


class TextChoices:
    """One prompt's choices, whole or chunk by chunk (each choice's offsets run on)."""

    def __init__(self, generation: Generation, shape: TextShape) -> None:
        self._generation = generation
        self._shape = shape
        self._prompt = generation.prompt_text
        self._offsets = [len(self._prompt)] * generation.request.n
        self._opened = [False] * generation.request.n
        self._prompt_logprobs: TextLogprobs | None = None

    def _scored_prompt(self) -> TextLogprobs | None:
        """The prompt's tokens' logprobs from offset 0, if asked for (made once)."""
        scored = self._generation.prompt_logprobs
        if self._prompt_logprobs is None and self._shape.logprobs and scored is not None:
            self._prompt_logprobs, _ = text_logprobs(scored.logprobs, 0, scored.first_token)
        return self._prompt_logprobs

    def whole(
        self,
        index: int,
        text: str,
        items: Sequence[TokenLogprob],
        finish: FinishReason | None,
    ) -> TextChoice:
        """A choice with all its text and tokens."""
        logprobs = None
        if self._shape.logprobs:
            logprobs, _ = text_logprobs(items, len(self._prompt))
        if self._shape.echo:
            text = self._prompt + text
            prompt_logprobs = self._scored_prompt()
            if logprobs is not None and prompt_logprobs is not None:
                logprobs = joined([prompt_logprobs, logprobs])
        return TextChoice(index=index, text=text, logprobs=logprobs, finish_reason=finish)

    def chunk(self, delta: ChoiceDelta, index: int) -> TextChoice | None:
        """What a delta adds to its choice (the prompt first, with `echo`); None when it adds
        nothing a client would see."""
        logprobs = None
        if self._shape.logprobs and delta.logprobs:
            start = self._offsets[delta.index]
            logprobs, self._offsets[delta.index] = text_logprobs(delta.logprobs, start)
        text = delta.text
        if self._shape.echo and not self._opened[delta.index]:
            text = self._prompt + text
            prompt_logprobs = self._scored_prompt()
            if prompt_logprobs is not None:
                logprobs = joined([prompt_logprobs, *([logprobs] if logprobs else [])])
        self._opened[delta.index] = True
        if not text and logprobs is None and delta.finish_reason is None:
            return None
        return TextChoice(
            index=index, text=text, logprobs=logprobs, finish_reason=delta.finish_reason
        )
