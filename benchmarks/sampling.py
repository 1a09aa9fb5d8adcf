"""Sampling presets of the comparison: greedy (as before), the spec's default temperature, and
temperature with top_p or a presence penalty, which take Shard's logit-processing path.

Each preset says which servers run it and at which concurrencies, so the full run stays near
45 minutes on two cores: every server runs greedy; llama-cpp-python's server, which serves one
request at a time, runs nothing else; the processed presets run only against llama-server at
the `--processed-clients` levels.

A sampled request carries a seed that is a fixed function of (client, request), the same for
every server, so a run can be repeated exactly (the servers' random streams differ, so their
texts do not match each other).
"""

from dataclasses import dataclass

from benchmarks.servers import SERVER_NAMES


@dataclass(frozen=True)
class Sampling:
    """The sampling parameters every request of a workload carries, and who runs them."""

    name: str  # the key on the command line and in results
    title: str  # as the report names it
    params: tuple[tuple[str, float], ...]  # request fields, e.g. (("temperature", 0.7),)
    servers: tuple[str, ...]  # the servers that run it
    processed: bool = False  # run at the --processed-clients levels rather than --clients

    @property
    def seeded(self) -> bool:
        """Whether requests carry a seed: only sampled ones draw random numbers."""
        return dict(self.params).get("temperature", 0.0) > 0

    def body(self, seed: int) -> dict[str, float | int]:
        """The request fields: the parameters, and the seed when the request samples."""
        fields: dict[str, float | int] = dict(self.params)
        if self.seeded:
            fields["seed"] = seed
        return fields


SAMPLED_SERVERS: tuple[str, ...] = ("shard", "llama-server", "llama-server-ngram")
PROCESSED_SERVERS: tuple[str, ...] = ("shard", "llama-server")

GREEDY = Sampling("greedy", "greedy", (("temperature", 0.0),), SERVER_NAMES)
SAMPLED = Sampling("sampled", "temperature 0.7", (("temperature", 0.7),), SAMPLED_SERVERS)
TOP_P = Sampling(
    "top-p",
    "temperature 0.7, top_p 0.9",
    (("temperature", 0.7), ("top_p", 0.9)),
    PROCESSED_SERVERS,
    processed=True,
)
PRESENCE = Sampling(
    "presence",
    "temperature 0.7, presence_penalty 0.5",
    (("temperature", 0.7), ("presence_penalty", 0.5)),
    PROCESSED_SERVERS,
    processed=True,
)
SAMPLINGS: dict[str, Sampling] = {s.name: s for s in (GREEDY, SAMPLED, TOP_P, PRESENCE)}
SMOKE_SAMPLINGS: tuple[str, ...] = (GREEDY.name, SAMPLED.name)


def seed_for(client: int, request: int) -> int:
    """A sampled request's seed: fixed per (client, request), under 2**31 for every server."""
    return 1 + client * 1009 + request
