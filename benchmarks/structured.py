"""Section: what structured output costs a token, and whether its answers parse.

One client asks each server for descriptions, once free and once held to a JSON schema
(`response_format` json_schema, strings and numbers bounded so that answers end), greedy and
at the spec's default temperature 0.7 with a fixed seed. The cost of a constrained token is
the decode time per token (first to last streamed token, so prompt processing is left out)
with the schema over the same without it. Shard is measured with drafts off, which isolates
the constraint's own cost, and with its defaults; llama-server applies the same schema as a
grammar. Every constrained answer is checked: does it parse, and does it match the schema?
"""

import json
import statistics
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from benchmarks.chat_client import connect
from benchmarks.harness import Harness, Journal, measured_on_fresh_server
from benchmarks.servers import (
    ServerConfig,
    free_port,
    launch_spec,
)
from benchmarks.workload import TOPICS, WARMUP_PROMPT

COST_TARGET = 1.15
"""A constrained token costs at most this many unconstrained ones (Shard, drafts off)."""

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 40},
        "summary": {"type": "string", "maxLength": 240},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 16}, "maxItems": 4},
        "rating": {"type": "integer", "minimum": 1, "maximum": 10},
    },
    "required": ["title", "summary", "tags", "rating"],
    "additionalProperties": False,
}
RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "description", "schema": SCHEMA, "strict": True},
}
PROMPT = "Describe {topic}. Give a title, a summary, some tags and a rating from 1 to 10."
SAMPLINGS: dict[str, dict[str, object]] = {
    "greedy": {"temperature": 0},
    "T=0.7": {"temperature": 0.7},
}


@dataclass(frozen=True)
class Variant:
    """One server as measured: its label, which server, and extra Shard flags."""

    label: str
    server: str
    shard_args: tuple[str, ...] = ()


VARIANTS: tuple[Variant, ...] = (
    Variant("shard, drafts off", "shard", ("--draft-max", "0", "--no-ngram-drafts")),
    Variant("shard", "shard"),
    Variant("llama-server", "llama-server"),
)


@dataclass(frozen=True)
class StructuredPlan:
    variants: tuple[str, ...]  # labels from VARIANTS
    prompts: int
    max_tokens: int


@dataclass(frozen=True)
class StructuredSample:
    variant: str
    sampling: str
    constrained: bool
    prompt: int
    decode_tokens_per_s: float | None
    completion_tokens: int
    parses: bool | None  # constrained answers only: valid JSON matching the schema


@dataclass
class StructuredOutcome:
    samples: list[StructuredSample] = field(default_factory=list)
    other_cpu: dict[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class StructuredRow:
    """Medians for one (variant, sampling): free and constrained decode rates."""

    variant: str
    sampling: str
    free_tokens_per_s: float | None
    constrained_tokens_per_s: float | None
    parsed: int
    answers: int

    @property
    def cost(self) -> float | None:
        """Decode time of a constrained token over a free one."""
        free, held = self.free_tokens_per_s, self.constrained_tokens_per_s
        return free / held if free and held else None


def matches_schema(text: str) -> bool:
    """The answer parses and has SCHEMA's fields, types and bounds (a check of what was
    promised, written for this one schema)."""
    try:
        value = json.loads(text)
    except ValueError:
        return False
    if not isinstance(value, dict) or set(value) != set(SCHEMA["required"]):
        return False
    tags, rating = value["tags"], value["rating"]
    return (
        isinstance(value["title"], str)
        and len(value["title"]) <= 40
        and isinstance(value["summary"], str)
        and len(value["summary"]) <= 240
        and isinstance(tags, list)
        and len(tags) <= 4
        and all(isinstance(tag, str) and len(tag) <= 16 for tag in tags)
        and isinstance(rating, int)
        and 1 <= rating <= 10
    )


def summarize_structured(outcome: StructuredOutcome) -> list[StructuredRow]:
    rows = []
    keys = dict.fromkeys((s.variant, s.sampling) for s in outcome.samples)
    for variant, sampling in keys:
        mine = [s for s in outcome.samples if (s.variant, s.sampling) == (variant, sampling)]

        def rate(constrained: bool, mine: list[StructuredSample] = mine) -> float | None:
            rates = [
                s.decode_tokens_per_s
                for s in mine
                if s.constrained == constrained and s.decode_tokens_per_s
            ]
            return statistics.median(rates) if rates else None

        held = [s for s in mine if s.constrained]
        parsed = sum(1 for s in held if s.parses)
        rows.append(StructuredRow(variant, sampling, rate(False), rate(True), parsed, len(held)))
    return rows


async def _measure(
    base_url: str, api_key: str, variant: str, plan: StructuredPlan, runs: int
) -> list[StructuredSample]:
    client = await connect(base_url, api_key)
    samples: list[StructuredSample] = []
    try:
        await client.complete(WARMUP_PROMPT, 8)
        await client.complete(WARMUP_PROMPT, 8, {"response_format": RESPONSE_FORMAT})
        for run in range(runs):
            for index in range(plan.prompts):
                prompt = PROMPT.format(topic=TOPICS[(index * 5 + run) % len(TOPICS)])
                for sampling, fields in SAMPLINGS.items():
                    seeded = {**fields, "seed": 4242 + 97 * run + index}
                    for constrained in (False, True):
                        body = (
                            {**seeded, "response_format": RESPONSE_FORMAT}
                            if constrained
                            else seeded
                        )
                        answer = await client.complete(prompt, plan.max_tokens, body)
                        samples.append(
                            StructuredSample(
                                variant,
                                sampling,
                                constrained,
                                index,
                                answer.decode_tokens_per_s,
                                answer.completion_tokens,
                                matches_schema(answer.text) if constrained else None,
                            )
                        )
        return samples
    finally:
        await client.aclose()


def run_structured(
    plan: StructuredPlan, config: ServerConfig, harness: Harness, journal: Journal
) -> StructuredOutcome:
    """Every variant in turn, each freshly started; one that fails is recorded and skipped."""
    outcome = StructuredOutcome()
    for variant in (v for v in VARIANTS if v.label in plan.variants):
        label = f"{variant.label}, structured"
        journal.before_start(label, harness)
        port = free_port()
        extra = (*config.shard_args, *variant.shard_args)
        spec = launch_spec(variant.server, replace(config, shard_args=extra), port)
        journal.launch_commands[label] = spec.display(port)
        name = variant.label.replace(", ", "-").replace(" ", "-")
        measured = measured_on_fresh_server(
            label,
            spec,
            harness.log_dir / f"{name}-structured.log",
            harness,
            journal,
            partial(
                _measure,
                api_key=config.api_key,
                variant=variant.label,
                plan=plan,
                runs=harness.runs,
            ),
        )
        if measured is not None:
            samples, outcome.other_cpu[variant.label] = measured
            outcome.samples += samples
    return outcome


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def structured_markdown(plan: StructuredPlan, outcome: StructuredOutcome) -> list[str]:
    rows = summarize_structured(outcome)
    prompts = f"{plan.prompts} prompt" + ("s" if plan.prompts > 1 else "")
    lines = [
        "## Structured outputs: the cost of a constrained token",
        "",
        f'One client, {prompts} per run ("{PROMPT.format(topic="<topic>")}"), '
        f"max_tokens {plan.max_tokens}, each asked once free and once with a JSON schema "
        "(`response_format` json_schema, strict; four fields, strings and numbers bounded), "
        "greedy and at temperature 0.7 with a seed. Decode rate is tokens per second from the "
        "first streamed token to the last (median over requests); the cost is the free rate "
        "over the constrained one: what a constrained token costs in unconstrained tokens. "
        "Shard with drafts off isolates the constraint's own cost; with its defaults, n-gram "
        "drafts fit JSON and prose differently. An answer parses when it is valid JSON with "
        "the schema's fields, types and bounds.",
        "",
        "| server | sampling | free tok/s | constrained tok/s | cost | answers that parse |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        cost = "n/a" if row.cost is None else f"{row.cost:.2f}x"
        lines.append(
            f"| {row.variant} | {row.sampling} | {_rate(row.free_tokens_per_s)} | "
            f"{_rate(row.constrained_tokens_per_s)} | {cost} | {row.parsed}/{row.answers} |"
        )
    lines.append("")
    pure = [row.cost for row in rows if row.variant == VARIANTS[0].label and row.cost]
    if pure:
        worst = max(pure)
        met = "met" if worst <= COST_TARGET else "**not met**"
        lines += [
            f"A constrained token costs at most {worst:.2f}x a free one in Shard with drafts "
            f"off (target <= {COST_TARGET:.2f}x): {met}.",
            "",
        ]
    cpu = ", ".join(f"{name} {_share(value)}" for name, value in outcome.other_cpu.items())
    if cpu:
        lines += [f"Other CPU while measuring: {cpu}.", ""]
    return lines


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"
