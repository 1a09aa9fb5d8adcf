"""Filling one decode's batch: every decoding choice's next token and draft, then as much
waiting prompt as fits (continuous batching, as llama.cpp's server does)."""

from shard.engine.model import TokenBatch
from shard.engine.sequence import Choice, Task


def plan_prompt_chunks(running: list[Task], budget: int) -> list[tuple[Task, int]]:
    """How many prompt tokens of which tasks fit in the batch's spare room, in order."""
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
    return chunks


def fill_batch(
    batch: TokenBatch,
    decoding: list[Choice],
    chunks: list[tuple[Task, int]],
    two_logit_rows: bool = False,
) -> None:
    """Add tokens in ascending sequence id.

    With one KV stream per sequence, llama.cpp splits a batch into one sub-batch per run of
    consecutive sequence ids; out of order, 8 sequences cost 8 graph runs instead of 1.

    With `two_logit_rows`, a prompt chunk that would be the batch's only row with logits also
    asks for its second-to-last token's (unused): on builds that compute one row with another
    kernel, the output layer then takes the same kernel as in every other step.
    """
    batch.clear()
    finishing = [(task, take) for task, take in chunks if task.prefilled + take == len(task.prompt)]
    lone = two_logit_rows and not decoding and len(finishing) == 1 and finishing[0][1] >= 2
    lone_chunk = finishing[0][0] if lone else None
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
        wanted = (last - 1, last) if task is lone_chunk else (last,)
        for position in range(task.prefilled, task.prefilled + take):
            index = batch.add(task.prompt[position], position, seq_id, position in wanted)
        if task.prefilled + take == len(task.prompt):
            task.logits_index = index
