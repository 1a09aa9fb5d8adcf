"""Filling one decode's batch: every decoding choice's next token and draft, then as much
waiting prompt as fits (continuous batching, as llama.cpp's server does)."""

from shard.engine.model import TokenBatch
from shard.engine.sequence import Choice, Task


def plan_prompt_chunks(
    running: list[Task], budget: int, single: bool = False
) -> list[tuple[Task, int]]:
    """How many prompt tokens of which tasks fit in the batch's spare room, in order; with
    `single`, only the first task's."""
    chunks: list[tuple[Task, int]] = []
    for task in running:
        remaining = len(task.prompt) - task.prefilled
        if remaining == 0:
            continue
        if budget <= 0:
            break
        take = min(budget, remaining)
        chunks.append((task, take))
        budget -= take
        if single:
            break
    return chunks


def fill_batch(
    batch: TokenBatch,
    decoding: list[Choice],
    chunks: list[tuple[Task, int]],
    rows_padded: bool = False,
) -> None:
    """Add tokens in ascending sequence id.

    With one KV stream per sequence, llama.cpp splits a batch into one sub-batch per run of
    consecutive sequence ids; out of order, 8 sequences cost 8 graph runs instead of 1.

    With `rows_padded` (builds that compute a matmul of one row with another kernel than one
    of several), the caller gives either decoding choices, each with as many draft tokens or
    with none but one where no neighbouring sequence id decodes, or a single prompt chunk
    (docs/architecture.md, invariant 1). A finishing chunk
    then asks for logits at its last two tokens, or, if it has one token, at that token and a
    filler after it, which the engine forgets again: every sub-batch has two rows at least and
    never exactly one row with logits.
    """
    batch.clear()
    entries: list[tuple[int, Choice | tuple[Task, int]]] = [
        (choice.seq_id, choice) for choice in decoding
    ]
    entries += [(task.lead.seq_id, (task, take)) for task, take in chunks]
    for seq_id, entry in sorted(entries, key=lambda item: item[0]):
        if isinstance(entry, Choice):
            assert entry.next_token is not None
            position = entry.position
            entry.batch_indices = [batch.add(entry.next_token, position, seq_id, True)]
            for offset, token in enumerate(entry.draft.tokens, start=1):
                entry.batch_indices.append(batch.add(token, position + offset, seq_id, True))
            continue
        task, take = entry
        last = len(task.prompt) - 1
        finishing = task.prefilled + take == len(task.prompt)
        wanted = () if not finishing else (last - 1, last) if rows_padded else (last,)
        every = task.wants_prompt_logprobs
        task.prompt_rows = []
        for position in range(task.prefilled, task.prefilled + take):
            want = every or position in wanted
            index = batch.add(task.prompt[position], position, seq_id, want)
            if every and position < last:
                task.prompt_rows.append((position, index))
        if finishing:
            task.logits_index = index
            if rows_padded and take == 1:
                batch.add(task.prompt[last], last + 1, seq_id, True)  # the filler
