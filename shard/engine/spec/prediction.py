"""Predicted Outputs: drafts from text the client expects the answer to repeat (a file being
edited, a document being rewritten), read in step with what the model writes."""

from collections.abc import Sequence


class PredictionAlignment:
    """Where a sequence's output stands in its prediction.

    `cursor` is the prediction token expected next, and `run` how many output tokens in a row
    have followed the prediction (the match behind the next draft). An output token that
    differs (the edit) loses the place; it is found again where the output's last n tokens
    (max_n down to min_n) occur in the prediction, nearest after where it was lost, so the
    drafts pick up once the model is back on the original text.
    """

    def __init__(self, prediction: Sequence[int], min_n: int = 2, max_n: int = 8) -> None:
        self.prediction = list(prediction)
        self.min_n, self.max_n = min_n, max_n
        self.cursor: int | None = 0
        self.run = 0
        self.matched = 0
        """Output tokens that were the prediction's next token: prediction tokens that
        appeared in the output, in order (what usage reports as accepted)."""
        self.output: list[int] = []
        self._continuations: dict[tuple[int, ...], list[int]] = {}
        for end in range(1, len(self.prediction) + 1):
            for n in range(min_n, max_n + 1):
                if end >= n:
                    gram = tuple(self.prediction[end - n : end])
                    self._continuations.setdefault(gram, []).append(end)
        self._lost_at = 0

    def advance(self, token: int) -> None:
        """The output's next token."""
        self.output.append(token)
        cursor = self.cursor
        if cursor is not None and cursor < len(self.prediction):
            if self.prediction[cursor] == token:
                self.cursor, self.run = cursor + 1, self.run + 1
                self.matched += 1
                return
            self._lost_at = cursor
        self.cursor, self.run = self._find()

    def draft(self, k: int) -> list[int]:
        """Up to k tokens the prediction says come next."""
        if self.cursor is None or k <= 0:
            return []
        return self.prediction[self.cursor : self.cursor + k]

    def _find(self) -> tuple[int | None, int]:
        for n in range(min(self.max_n, len(self.output)), self.min_n - 1, -1):
            places = self._continuations.get(tuple(self.output[-n:]))
            if places:
                ahead = [place for place in places if place >= self._lost_at]
                return (min(ahead) if ahead else places[-1]), n
        return None, 0
